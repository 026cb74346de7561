"""timm models in the registry: ``timm:NAME`` (any name ``timm.list_models()`` knows), with
creation arguments after commas (``timm:vit_tiny_patch16_224,patch_size=4,depth=6``).

The model is timm's own (its state-dict keys unchanged, so a plain timm state dict loads), its
class extended with the feature contract of ``models.base`` (``TimmContract``), built on timm's
``forward_intermediates`` and ``feature_info``:
- hierarchical networks (ResNet, ConvNeXt, Swin, ...): ``feats`` = [stem, stages, embedding],
  the stem being the first ``feature_info`` entry when there are five or more (ResNet's
  ``act1``), else the input of the first stage;
- networks of one resolution (ViT, DeiT, MLP-Mixer): the blocks are split as the OFA-KD authors
  split a 12-block ViT (blocks 2, 4, 10 and 12 end the four stages, Swin's 2:2:6:2), the first
  block's output stands for the stem, and the tokens are given as maps (B, D, h, w); with
  ``tokens=True`` as token sequences (B, L, D), class token first.
The embedding is ``forward_head(pre_logits=True)``; the head map (the map the classifier pools)
is given where the head is plain pooling and a linear layer. Stage outputs before their
activation and the stage contract (FCFD) are not available.
"""
import ast
import contextlib
import difflib
import functools
import socket
import urllib.parse

import torch
import torch.nn as nn

from core.util import UserError

PREFIX = 'timm:'
# Networks whose head is global average pooling and the linear classifier (no norm, no conv).
PLAIN_HEADS = ('ResNet', 'EfficientNet', 'RegNet')
# Where the OFA-KD authors end the four stages of a 12-block network (blocks counted from 1).
STAGE_ENDS_OF_12 = (2, 4, 10, 12)


def is_timm_name(name):
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_timm_name(name):
    """``(timm name, creation keyword arguments)`` of ``timm:NAME[,key=value...]``."""
    model, *arguments = name[len(PREFIX):].split(',')
    kwargs = {}
    for argument in arguments:
        key, sep, value = argument.partition('=')
        if not sep or not key:
            raise KeyError(f"'{name}': creation arguments are key=value after commas (e.g. "
                           f"timm:vit_tiny_patch16_224,patch_size=4)")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return model, kwargs


@functools.lru_cache(maxsize=None)
def known_names():
    import timm
    return frozenset(timm.list_models())


def check_timm_name(name):
    """Refuse (``KeyError``, one line) a name timm does not know, with close names; a
    pretrained tag after a dot (``deit3_small_patch16_224.fb_in22k_ft_in1k``) must be one of
    the model's."""
    import timm
    model, _ = parse_timm_name(name)
    architecture, tag = timm.models.split_model_name_tag(model)
    if architecture not in known_names():
        close = difflib.get_close_matches(architecture, known_names(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else \
            " (timm.list_models() lists them)"
        raise KeyError(f"timm has no model '{architecture}'{hint}")
    if tag and model not in timm.list_pretrained(model):
        tags = timm.list_pretrained(architecture + '.*')
        raise KeyError(f"timm has no weights '{model}' (its weights: "
                       f"{', '.join(tags) or 'none'})")


def create_timm_model(name, num_classes, image_size=None, pretrained=False):
    """timm's model ``name`` for ``num_classes`` classes and ``image_size`` inputs (where its
    class takes ``img_size``), with the feature contract; with timm's weights when
    ``pretrained`` (one line where they cannot be downloaded)."""
    check_timm_name(name)
    model_name, kwargs = parse_timm_name(name)
    kwargs = dict(kwargs, num_classes=num_classes, pretrained=pretrained)
    if pretrained:
        return _with_weights(name, lambda: _create(model_name, image_size, kwargs))
    return _create(model_name, image_size, kwargs)


def _with_weights(name, create):
    """``create()`` of a model with timm's weights, read from the local caches first (the
    Hugging Face cache, torch hub's) with no request to the hub, as a compute node without a
    network needs; only weights missing there are asked of the hub (``HF_ENDPOINT``, a
    mirror, if set), and not at all under ``HF_HUB_OFFLINE=1``. One line where they cannot be
    had."""
    from huggingface_hub import constants
    fix = (f'give a file of its weights instead (a timm state dict, or a checkpoint of '
           f'train_teacher.py): train_student.py --path_t FILE --model_t {name}')
    try:
        with hub_offline(constants):
            return create()
    except OSError:  # not in the caches (huggingface_hub's misses are OSErrors)
        pass
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"timm's weights of {name} are not in the local cache "
                        f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set; download them "
                        f"where there is a network, or {fix}") from None
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    try:  # a quick look first: the hub's client retries for a minute before it gives up
        socket.create_connection((endpoint.hostname, endpoint.port or (
            443 if endpoint.scheme == 'https' else 80)), timeout=5).close()
    except OSError:
        raise UserError(f"timm's weights of {name} are not in the local cache "
                        f"({constants.HF_HUB_CACHE}) and {constants.ENDPOINT} cannot be "
                        f"reached (no network access?); {fix}") from None
    try:
        return create()
    except OSError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot download timm's weights of {name} from {constants.ENDPOINT} "
                        f"(not in the local cache {constants.HF_HUB_CACHE}): {reason}; "
                        f"{fix}") from None


@contextlib.contextmanager
def hub_offline(constants):
    """huggingface_hub's offline mode for the block: files come from its cache or not at
    all."""
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _create(model_name, image_size, kwargs):
    import timm
    if image_size is not None and 'img_size' not in kwargs:
        try:
            model = timm.create_model(model_name, img_size=image_size, **kwargs)
        except TypeError as e:
            if 'img_size' not in str(e):
                raise
            model = timm.create_model(model_name, **kwargs)
    else:
        model = timm.create_model(model_name, **kwargs)
    model.__class__ = with_contract(type(model))
    model.setup_contract()
    return model


@functools.lru_cache(maxsize=None)
def with_contract(cls):
    """``cls`` (a timm model class) extended with the feature contract."""
    return type(cls.__name__, (TimmContract, cls), {'__module__': cls.__module__})


def _as_map(x, channels):
    """A (B, C, H, W) map of a stage input that may be channels-last (B, H, W, C) (Swin)."""
    if x.dim() == 4 and x.shape[1] != channels and x.shape[-1] == channels:
        return x.permute(0, 3, 1, 2)
    return x


class TimmContract:
    """The feature contract of ``models.base`` for a timm model (mixed into its class)."""
    stage_input = None
    num_stages = 0

    def setup_contract(self):
        info = [dict(entry) for entry in self.feature_info]
        reductions = [entry['reduction'] for entry in info]
        self.token_model = len(set(reductions)) == 1 and len(info) > 1
        self.stem_hook = None
        if self.token_model:
            depth = len(info)
            ends = sorted({max(1, round(depth * end / 12)) - 1 for end in STAGE_ENDS_OF_12})
            self.contract_blocks = [0] + ends  # the stem, then the stages
        else:
            self.contract_blocks = list(range(len(info)))
            if len(info) < 5:  # no stem entry: the first stage's input stands for it
                self.stem_hook = (info[0]['module'], info[0]['num_chs'])
        self.plain_head = type(self).__name__ in PLAIN_HEADS

    def forward(self, x, is_feat=False, preact=False, with_head_map=False, tokens=False):
        if not (is_feat or with_head_map or tokens):
            return super().forward(x)
        if preact:
            raise ValueError(f'{type(self).__name__} (timm) gives its stages after their '
                             f'activation only, not before')
        feats, final = self.contract_features(x, tokens)
        embedding = self.forward_head(final, pre_logits=True)
        classifier = self.get_classifier()
        # the head's last layer on the embedding: one pooling and one dropout draw, as the
        # model's own forward (distilled models, with two classifiers, take their own head)
        logits = (classifier(embedding) if isinstance(classifier, nn.Module)
                  else self.forward_head(final))
        feats = feats + [embedding]
        if with_head_map:
            head_map = final if self.plain_head and final.dim() == 4 else None
            return feats, logits, head_map
        return feats, logits

    def contract_features(self, x, tokens=False):
        """``([stem, stages...], final features)``; token sequences with ``tokens`` (for a
        network of one resolution)."""
        stem = []
        handle = None
        if self.stem_hook is not None:
            module, channels = self.stem_hook
            handle = self.get_submodule(module).register_forward_pre_hook(
                lambda _, inputs: stem.append(_as_map(inputs[0], channels)))
        indices = sorted(set(self.contract_blocks))
        try:
            if tokens and self.token_model:
                prefix = getattr(self, 'num_prefix_tokens', 0)
                final, inter = self.forward_intermediates(
                    x, indices=indices, output_fmt='NLC',
                    **({'return_prefix_tokens': True} if prefix else {}))
                if prefix:
                    inter = [torch.cat([cls_tokens, patches], 1) for patches, cls_tokens in inter]
            else:
                final, inter = self.forward_intermediates(x, indices=indices)
        finally:
            if handle is not None:
                handle.remove()
        by_block = dict(zip(indices, inter))
        return stem + [by_block[i] for i in self.contract_blocks], final

    @property
    def token_grid(self):
        """The side of a token model's patch grid (None for a hierarchical network)."""
        if not self.token_model:
            return None
        return self.patch_embed.grid_size[0] if hasattr(self, 'patch_embed') else \
            self.stem.grid_size[0]

    def get_feat_modules(self):
        raise ValueError(f'{type(self).__name__} (timm) has no list of feature modules')

    def get_bn_before_relu(self):
        raise ValueError(f'{type(self).__name__} (timm) has no BN-before-ReLU list')

    def stage_forward(self, stage, x):
        raise ValueError(f'{type(self).__name__} (timm) is not split into stages')
