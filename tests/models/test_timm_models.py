"""timm models in the registry (``timm:NAME``), random-initialised: the feature contract on a
CNN, a ViT and an MLP-Mixer (stage shapes, logits equal to the model's own forward), tokens,
the head map, creation arguments, timm's own state-dict keys, and the errors."""
import socket

import pytest
import timm
import torch

from core.util import UserError
from models import get_model, model_dict
from models.timm_models import parse_timm_name

X = torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize('name, shapes', [
    # ResNet: its stem entry (act1) and four stages
    ('timm:resnet10t', [(64, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2), (512, 1, 1), (512,)]),
    # ViT: blocks 1, 2, 4, 10 and 12 of 12 (the first stands for the stem), tokens as 2x2 maps
    ('timm:vit_tiny_patch16_224', [(192, 2, 2)] * 5 + [(192,)]),
    # MLP-Mixer, 8 blocks: 1 (stem), then 1, 3, 7, 8 (the OFA-KD authors' 2:2:6:2 split)
    ('timm:mixer_s16_224', [(512, 2, 2)] * 5 + [(512,)]),
    # ConvNeXt has no stem entry: its first stage's input stands for it
    ('timm:convnext_atto', [(40, 8, 8), (40, 8, 8), (80, 4, 4), (160, 2, 2), (320, 1, 1), (320,)]),
])
def test_the_feature_contract_on_timm_models(name, shapes):
    model = get_model(name, 10, image_size=32).eval()
    feats, logits = model(X, is_feat=True)
    assert [tuple(f.shape[1:]) for f in feats] == shapes
    assert torch.equal(logits, model(X))  # the model's own forward
    assert torch.equal(logits, model.forward_head(model.forward_features(X)))


def test_token_models_give_their_tokens_with_the_class_token_first():
    vit = get_model('timm:vit_tiny_patch16_224,depth=4', 10, image_size=32).eval()
    maps = vit(X, is_feat=True)[0]
    tokens = vit(X, is_feat=True, tokens=True)[0]
    assert vit.token_grid == 2 and [tuple(t.shape[1:]) for t in tokens[:-1]] == [(5, 192)] * 4
    # the patch tokens are the map's positions, row by row; the class token comes first
    assert torch.equal(tokens[1][:, 1:], maps[1].flatten(2).transpose(1, 2))
    mixer = get_model('timm:mixer_s16_224', 10, image_size=32).eval()
    assert tuple(mixer(X, is_feat=True, tokens=True)[0][1].shape[1:]) == (4, 512)


def test_the_head_map_is_given_where_the_head_is_pooling_and_a_linear_layer():
    resnet = get_model('timm:resnet10t', 10).eval()
    feats, logits, head_map = resnet(X, with_head_map=True)
    assert torch.allclose(resnet.get_classifier()(head_map.mean((2, 3))), logits, atol=1e-6)
    assert get_model('timm:convnext_atto', 10)(X, with_head_map=True)[2] is None
    with pytest.raises(ValueError, match='after their activation'):
        resnet(X, is_feat=True, preact=True)


def test_creation_arguments_and_timm_state_dicts():
    assert parse_timm_name('timm:vit_tiny_patch16_224,patch_size=4,depth=2,act_layer=gelu') == (
        'vit_tiny_patch16_224', {'patch_size': 4, 'depth': 2, 'act_layer': 'gelu'})
    small = get_model('timm:vit_tiny_patch16_224,patch_size=8,depth=2', 7, image_size=32)
    assert small.token_grid == 4 and len(small.blocks) == 2 and small.head.out_features == 7
    # a plain timm state dict loads strictly: the keys are timm's own
    plain = timm.create_model('vit_tiny_patch16_224', patch_size=8, depth=2, num_classes=7,
                              img_size=32)
    small.load_state_dict(plain.state_dict())
    assert not isinstance(plain, type(small))


def test_unknown_names_are_answered_with_close_ones():
    with pytest.raises(KeyError, match='did you mean timm:vit_tiny_patch16_'):
        get_model('timm:vit_tiny_patch16', 10)
    with pytest.raises(KeyError, match='key=value'):
        get_model('timm:resnet18,depth', 10)
    with pytest.raises(KeyError, match="invalid choice: 'resnet9000'.*or timm:NAME"):
        get_model('resnet9000', 10)
    # a pretrained tag names one of the model's weights
    assert get_model('timm:resnet10t.c3_in1k', 10).get_classifier().out_features == 10
    with pytest.raises(KeyError, match=r"no weights 'resnet10t.in9k' \(its weights: "
                                       r"resnet10t.c3_in1k\)"):
        get_model('timm:resnet10t.in9k', 10)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of the test's own, and no network: a connection is refused
    and recorded."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    tried = []

    def offline(address, *args, **kwargs):
        tried.append(address)
        raise socket.gaierror('no network')
    monkeypatch.setattr(socket, 'create_connection', offline)
    monkeypatch.setattr(socket.socket, 'connect', lambda self, address: offline(address))
    return tmp_path / 'hub', tried


def cache_weights(cache, repo, state):
    """``state`` as ``repo``'s model.safetensors in a Hugging Face cache laid out as
    huggingface_hub lays it (refs/main naming the snapshot)."""
    from safetensors.torch import save_file
    commit = 'a' * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / 'snapshots' / commit).mkdir(parents=True)
    (folder / 'refs').mkdir()
    (folder / 'refs' / 'main').write_text(commit)
    save_file({k: v.contiguous() for k, v in state.items()},
              str(folder / 'snapshots' / commit / 'model.safetensors'))


def test_timm_weights_in_the_local_cache_load_without_asking_the_hub(hub_cache):
    cache, tried = hub_cache
    published = timm.create_model('resnet10t', num_classes=1000)
    cache_weights(cache, 'timm/resnet10t.c3_in1k', published.state_dict())
    model = get_model('timm:resnet10t', 1000, pretrained=True)
    assert tried == []  # nothing was asked of the network
    for key, value in published.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # another class count keeps the cached body, with a new classifier
    model = get_model('timm:resnet10t', 10, pretrained=True)
    assert torch.equal(model.conv1[0].weight, published.conv1[0].weight)
    assert model.get_classifier().out_features == 10


def test_timm_weights_missing_offline_are_one_line_naming_the_file_alternative(hub_cache,
                                                                               monkeypatch):
    cache, tried = hub_cache
    # no network: the hub's address is tried once, quickly, and the answer names the fix
    with pytest.raises(UserError, match=r'not in the local cache .*https://huggingface.co '
                                        r'cannot be reached \(no network access\?\).*'
                                        r'--path_t FILE --model_t timm:resnet10t'):
        get_model('timm:resnet10t', 10, pretrained=True)
    assert tried == [('huggingface.co', 443)]
    # a mirror (HF_ENDPOINT) is the address asked
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'ENDPOINT', 'http://127.0.0.1:9')
    tried.clear()
    with pytest.raises(UserError, match=r'http://127.0.0.1:9 cannot be reached'):
        get_model('timm:resnet10t', 10, pretrained=True)
    assert tried == [('127.0.0.1', 9)]
    # HF_HUB_OFFLINE: the cache alone, no address tried
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    tried.clear()
    with pytest.raises(UserError, match=r'not in the local cache .* HF_HUB_OFFLINE is set.*'
                                        r'--path_t FILE --model_t timm:resnet10t') as e:
        get_model('timm:resnet10t', 10, pretrained=True)
    assert tried == [] and '\n' not in str(e.value)


@pytest.mark.parametrize('name', sorted(model_dict))
def test_every_registry_model_takes_any_image_size(name):
    model = model_dict[name](num_classes=5).eval()
    assert model(torch.randn(1, 3, 64, 48)).shape == (1, 5)
