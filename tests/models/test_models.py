import pytest
import torch
import torch.nn as nn
from torchvision import models as tv

from helper.teachers import get_teacher_name, load_teacher

from core.checkpoint import Checkpoint, save_checkpoint
from core.util import UserError
from models import cifar_model_dict, get_model, imagenet_model_dict, model_dict

R8 = [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8), (64,)]
R8X4 = [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (256,)]
WRN1, WRN2 = R8, [(16, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8), (128,)]
VGG = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4), (512,)]

# REFERENCE.md: exact parameter counts (num_classes=100) and per-sample feature shapes.
CIFAR_REFERENCE = {
    'resnet8': (83892, R8), 'resnet14': (181108, R8), 'resnet20': (278324, R8),
    'resnet32': (472756, R8), 'resnet44': (667188, R8), 'resnet56': (861620, R8),
    'resnet110': (1736564, R8), 'resnet8x4': (1233540, R8X4), 'resnet32x4': (7433860, R8X4),
    'ResNet50': (23705252, [(64, 32, 32), (256, 32, 32), (512, 16, 16), (1024, 8, 8),
                            (2048, 4, 4), (2048,)]),
    'wrn_16_1': (180916, WRN1), 'wrn_16_2': (703284, WRN2), 'wrn_40_1': (569780, WRN1),
    'wrn_40_2': (2255156, WRN2),
    'vgg8': (3965028, VGG), 'vgg11': (9277284, VGG), 'vgg13': (9462180, VGG),
    'vgg16': (14774436, VGG), 'vgg19': (20086692, VGG),
    'MobileNetV2': (812836, [(16, 16, 16), (12, 16, 16), (16, 8, 8), (48, 4, 4), (160, 2, 2),
                             (1280,)]),
    'ShuffleV1': (949258, [(24, 32, 32), (240, 16, 16), (480, 8, 8), (960, 4, 4), (960,)]),
    'ShuffleV2': (1355528, [(24, 32, 32), (116, 16, 16), (232, 8, 8), (464, 4, 4), (1024,)]),
}
SIMKD_PARAMS = {
    'resnet38': 569972, 'resnet116': 1833780, 'resnet14x2': 703732, 'resnet38x2': 2255604,
    'resnet110x2': 6911220, 'resnet14x4': 2783620, 'resnet38x4': 8983940,
    'MobileNetV2_1_0': 2353060, 'ShuffleV2_1_5': 2580548,
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('name', sorted(CIFAR_REFERENCE))
def test_repdistiller_models_match_reference(name):
    params, shapes = CIFAR_REFERENCE[name]
    model = get_model(name, 100).eval()
    assert n_params(model) == params
    x = torch.randn(2, 3, 32, 32)
    feats, logits = model(x, is_feat=True)
    assert [tuple(f.shape[1:]) for f in feats] == shapes
    assert logits.shape == (2, 100)
    assert torch.allclose(model(x), logits, atol=1e-5)  # is_feat=False: logits only
    pre_feats, _ = model(x, is_feat=True, preact=True)
    assert [f.shape for f in pre_feats] == [f.shape for f in feats]
    assert torch.equal(pre_feats[0], feats[0]) and torch.equal(pre_feats[-1], feats[-1])
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 100
    assert torch.allclose(classifier(feats[-1]), logits, atol=1e-5)


@pytest.mark.parametrize('name', ['resnet8', 'ResNet50', 'vgg8', 'ShuffleV1', 'ShuffleV2'])
def test_preact_features_hold_negative_values(name):
    feats, _ = get_model(name, 100).eval()(torch.randn(2, 3, 32, 32), is_feat=True, preact=True)
    for f in feats[1:-1]:
        assert f.min() < 0  # before the final ReLU
    post, _ = get_model(name, 100).eval()(torch.randn(2, 3, 32, 32), is_feat=True)
    for f in post[1:-1]:
        assert f.min() >= 0


@pytest.mark.parametrize('name', sorted(SIMKD_PARAMS))
def test_simkd_models_parameter_counts(name):
    assert n_params(get_model(name, 100)) == SIMKD_PARAMS[name]


def test_ofds_wide_resnets_are_its_own():
    # clovaai/overhaul-distillation 76344a8, CIFAR-100/models/WideResNet.py run with 100
    # classes: its WRN-28-4 and WRN-28-2 have these counts; its state-dict keys are ours.
    assert n_params(get_model('wrn_28_4', 100)) == 5872180
    assert n_params(get_model('wrn_28_2', 100)) == 1479220
    feats, _ = get_model('wrn_28_4', 100).eval()(torch.randn(1, 3, 32, 32), is_feat=True)
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 32, 32), (64, 32, 32), (128, 16, 16),
                                                    (256, 8, 8), (256,)]


def test_mdistillers_tinyimagenet_mobilenetv2_is_its_own():
    # mdistiller a08d46f, mdistiller/models/cifar/mv2_tinyimagenet.py run with 200 classes on
    # 64x64 inputs: its parameter count and feature shapes (f0-f4); its logits equal ours with
    # its weights copied in (checked when this model was written).
    model = get_model('MobileNetV2_TinyImagenet', 200, 'tinyimagenet64').eval()
    assert n_params(model) == 2497480
    feats, logits = model(torch.randn(2, 3, 64, 64), is_feat=True)
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 66, 66), (24, 33, 33), (32, 17, 17),
                                                    (64, 9, 9), (1280, 9, 9), (1280,)]
    assert logits.shape == (2, 200)


@pytest.mark.parametrize('name, params, channels', [
    ('pyramidnet200_240', 26844952, [100, 180, 1024]),
    ('pyramidnet110_84', 3913536, [44, 72, 100])])
def test_ofds_pyramidnets_are_its_own(name, params, channels):
    # clovaai/overhaul-distillation 76344a8, CIFAR-100/models/PyramidNet.py with 100 classes:
    # its parameter count and get_channel_num (the channels of its pre-ReLU features); its
    # logits and extract_feature(preReLU=True) equal ours on its weights (checked when written)
    model = get_model(name, 100).eval()
    assert n_params(model) == params
    feats, logits = model(torch.randn(2, 3, 32, 32), is_feat=True, preact=True)
    assert [f.shape[1] for f in feats[1:4]] == channels
    assert [bn.num_features for bn in model.get_bn_before_relu()] == channels


def test_extra_cifar_models_match_seed_tables():
    # seed table: WRN-16-4 2.77M, WRN-40-4 8.97M, CIFAR ResNet18 11.22M
    assert round(n_params(get_model('wrn_16_4', 100)) / 1e6, 2) == 2.77
    assert round(n_params(get_model('wrn_40_4', 100)) / 1e6, 2) == 8.97
    assert round(n_params(get_model('ResNet18', 100)) / 1e6, 2) == 11.22


HEAD_CASES = ([(name, 'cifar100', 32) for name in sorted(cifar_model_dict)]
              + [(name, 'imagenet', 64) for name in sorted(imagenet_model_dict)])


@pytest.mark.parametrize('name, dataset, size', HEAD_CASES)
def test_head_map_gives_the_logits_and_timms_contract_the_same_values(name, dataset, size):
    """The head contract, for every registered model: the map the classifier pools, pushed
    through the model's head (and through its classifier after global pooling, as SimKD and SRD
    do), gives the logits; the feature list is the same as without the map; and timm's
    contract gives the same values."""
    torch.manual_seed(0)
    model = get_model(name, 10, dataset).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats, logits, head_map = model(x, is_feat=True, with_head_map=True)
        plain_feats, plain_logits = model(x, is_feat=True)
        assert head_map.dim() == 4
        # float error relative to the largest logit: an untrained PyramidNet-200 in eval mode
        # gives logits near 1e13
        atol = 1e-5 * max(1.0, logits.abs().max().item())
        assert torch.allclose(model.forward_head(head_map), logits, atol=atol, rtol=1e-5)
        pooled = torch.nn.functional.adaptive_avg_pool2d(head_map, 1).flatten(1)
        assert torch.allclose(model.get_classifier()(pooled), logits, atol=atol, rtol=1e-5)
    assert torch.equal(logits, plain_logits)
    assert all(torch.equal(a, b) for a, b in zip(feats, plain_feats))
    # every registered model follows the contract
    assert feats[-1].dim() == 2 and logits.shape == (2, 10)
    assert len(model.get_feat_modules()) > 0
    check_timms_contract(model, x, size, feats, logits, head_map)


def check_timms_contract(model, x, size, feats, logits, head_map):
    """forward_features, forward_head and forward_intermediates give what RepDistiller's
    forward gives, bit for bit; feature_info names each map's channels and reduction."""
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        pre_feats = model(x, is_feat=True, preact=True)[0]
        pre_maps = model.forward_intermediates(x, preact=True, intermediates_only=True)
        assert torch.equal(model.forward_features(x), head_map) and torch.equal(final, head_map)
        assert torch.equal(model.forward_head(head_map), logits)
        assert torch.equal(model.forward_head(head_map, pre_logits=True), feats[-1])
        assert all(torch.equal(a, b) for a, b in zip(maps, feats[:-1]))
        assert len(maps) == len(feats) - 1 == len(pre_maps)
        assert all(torch.equal(a, b) for a, b in zip(pre_maps, pre_feats[:-1]))
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(last_two, maps[-2:]))
        assert torch.equal(model.forward_intermediates(x, indices=[0, -1])[1][1], maps[-1])
    if size == 32:
        assert [(i['num_chs'], i['reduction']) for i in model.feature_info] == [
            (m.shape[1], size // m.shape[-1]) for m in maps]
    with pytest.raises(ValueError, match='NCHW'):
        model.forward_intermediates(x, output_fmt='NLC')


def test_feature_info_of_repdistillers_resnets():
    assert [(i['num_chs'], i['reduction']) for i in get_model('resnet8x4', 100).feature_info] \
        == [(32, 1), (64, 1), (128, 2), (256, 4)]
    assert [i['reduction'] for i in get_model('ResNet50', 10, 'imagenet').feature_info] == [
        4, 4, 8, 16, 32]


def test_models_register_with_their_small_student_learning_rate():
    from models import small_lr_models, trains_at_small_lr
    from models.registry import register_model
    assert sorted(small_lr_models()) == ['MobileNetV2', 'MobileNetV2_1_0', 'ShuffleV1',
                                         'ShuffleV2', 'ShuffleV2_1_5']
    assert not trains_at_small_lr('resnet8') and not trains_at_small_lr('timm:resnet10t')
    with pytest.raises(AssertionError, match='registered twice'):
        register_model('resnet8', lambda **kwargs: None)


@pytest.mark.parametrize('name', ['wrn_40_2', 'MobileNetV2', 'ShuffleV2'])
def test_head_map_is_not_the_last_stage_where_the_head_adds_layers(name):
    model = get_model(name, 100).eval()
    with torch.no_grad():
        feats, logits, head_map = model(torch.randn(2, 3, 32, 32), is_feat=True,
                                        with_head_map=True)
        assert feats[-2].shape != head_map.shape or not torch.allclose(feats[-2], head_map)
        # RepDistiller's feats[-2] through the classifier misses the logits.
        pooled = torch.nn.functional.adaptive_avg_pool2d(feats[-2], 1).flatten(1)
        if pooled.shape[1] == model.get_classifier().in_features:
            assert not torch.allclose(model.get_classifier()(pooled), logits, atol=1e-3)


@pytest.mark.parametrize('name, builder', [('ResNet18', tv.resnet18), ('ResNet50', tv.resnet50),
                                           ('MobileNetV2_Imagenet', tv.mobilenet_v2),
                                           ('ShuffleV2_Imagenet', tv.shufflenet_v2_x1_0)])
def test_imagenet_models_load_torchvision_weights(name, builder):
    reference = builder().eval()
    model = get_model(name, 1000, dataset='imagenet').eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    feats, logits = model(x, is_feat=True)
    assert torch.allclose(logits, reference(x), atol=1e-4)
    assert feats[-1].shape[1] == model.get_classifier().in_features


@pytest.mark.parametrize('name, builder', [('ResNet101', tv.resnet101),
                                           ('ResNet152', tv.resnet152)])
def test_deep_imagenet_resnets_have_torchvisions_keys_and_shapes(name, builder):
    with torch.device('meta'):  # built without memory: only names and shapes are compared
        ours, theirs = get_model(name, 1000, dataset='imagenet'), builder()
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}


def test_resnet50_name_is_decided_by_dataset():
    assert n_params(get_model('ResNet50', 100, 'cifar100')) == 23705252
    assert n_params(get_model('ResNet50', 1000, 'imagenet')) == 25557032
    assert 'MobileNetV1' in imagenet_model_dict and 'MobileNetV1' in model_dict


def test_mobilenetv1_imagenet_features():
    model = get_model('MobileNetV1', 1000, 'imagenet').eval()
    assert n_params(model) == 4231976
    feats, _ = model(torch.randn(1, 3, 224, 224), is_feat=True)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (1024, 7, 7), (1024,)]


def test_unknown_model_lists_choices():
    with pytest.raises(KeyError, match='resnet8x4'):
        get_model('resnet9000', 100)


def test_repdistiller_checkpoint_round_trip(tmp_path):
    """A checkpoint in RepDistiller's layout (no 'arch'; name from the folder) loads strictly."""
    teacher = get_model('wrn_40_2', 100).eval()
    for m in teacher.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path / 'wrn_40_2_vanilla' / 'ckpt_epoch_240.pth'
    path.parent.mkdir()
    save_checkpoint({'model': teacher.state_dict(), 'epoch': 240,
                     'accuracy': torch.tensor(75.6)}, str(path))
    loaded, name = load_teacher(str(path), 100, 'cifar100')
    assert name == 'wrn_40_2'
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded.eval()(x), teacher(x))


@pytest.mark.parametrize('path, name', [
    ('save/models/wrn_40_2_vanilla/ckpt_epoch_240.pth', 'wrn_40_2'),
    ('save/models/resnet32x4_vanilla/ckpt_epoch_240.pth', 'resnet32x4'),
    ('save/models/resnet8x4_cifar100_lr_0.05_decay_0.0005_trial_0/resnet8x4_best.pth', 'resnet8x4'),
    ('save/models/MobileNetV2_1_0_vanilla/ckpt.pth', 'MobileNetV2_1_0'),
    ('save/models/ShuffleV2_1_5_cifar100/ckpt.pth', 'ShuffleV2_1_5'),
    ('save/student_model/S:vgg8_T:resnet32x4_cifar100_kd_r:0.1_a:0.9_b:0.0_1/vgg8_best.pth', 'vgg8'),
])
def test_teacher_name_from_folder(path, name):
    assert get_teacher_name(path) == name


def test_teacher_name_prefers_checkpoint_arch():
    assert get_teacher_name('x/resnet8_vanilla/a.pth', Checkpoint({}, arch='resnet20')) == \
        'resnet20'
    with pytest.raises(UserError, match='folder should start with a model name'):
        get_teacher_name('x/mystery/a.pth')


# FCFD's splits (LiuDongyang6/FCFD 2aefb7b, classification/models/*.py: stage_input and the
# number of stages of each family).
AUTHORS_SPLITS = {'resnet': ('afterrelu', 4), 'ResNet': ('afterrelu', 5), 'wrn': ('beforebn', 4),
                  'vgg': ('beforerelu', 5), 'MobileNetV2': ('beforerelu', 5),
                  'ShuffleV1': ('beforerelu', 4), 'ShuffleV2': ('afterrelu', 4)}


@pytest.mark.parametrize('name', sorted(cifar_model_dict))
def test_stages_run_in_turn_give_the_models_logits_and_features(name):
    torch.manual_seed(0)
    model = get_model(name, 10).eval()
    family = next((f for f in sorted(AUTHORS_SPLITS, key=len, reverse=True)
                   if name.startswith(f)), None)
    if family is None:  # a family FCFD's authors do not split (OFD's PyramidNets)
        assert (model.stage_input, model.num_stages) == (None, 0)
        return
    assert (model.stage_input, model.num_stages) == AUTHORS_SPLITS[family]
    for size in (32, 64) if family == 'vgg' else (32,):  # VGG's 4th pooling: 64x64 inputs only
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            outputs, y = [], x
            for stage in range(model.num_stages):
                y = model.stage_forward(stage, y)
                outputs.append(y)
            assert torch.allclose(model.forward_classifier(y), model(x), atol=1e-5)
            feats = model(x, is_feat=True, preact=model.stage_input == 'beforerelu')[0]
        for stage in range(1, model.num_stages - 1):  # the inner stages are the contract's maps
            assert torch.allclose(outputs[stage], feats[stage], atol=1e-5), stage


def test_imagenet_models_are_not_split_into_stages():
    model = get_model('ResNet18', 1000, 'imagenet')
    assert model.stage_input is None
    with pytest.raises(NotImplementedError, match='not split into stages'):
        model.stage_forward(0, torch.zeros(1, 3, 224, 224))
