"""Speed options shared by the scripts: mixed precision, channels-last, torch.compile and the
SGD implementation. With their defaults (off / auto) results equal the plain fp32 path."""
import contextlib

import torch


def autocast(training, device):
    """The autocast context of ``--amp`` (bf16, or fp16 with a grad scaler), or a no-op."""
    if training.amp == 'off':
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if training.amp == 'bf16' else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(training, device):
    return torch.amp.GradScaler(device.type, enabled=training.amp == 'fp16')


def prepare_modules(training, modules, networks):
    """Before the optimizer is built: ``--sync_bn`` for the trained network (``networks[0]``;
    a frozen teacher keeps its BN), channels-last weights for ``modules`` (and everything in
    them), in-place ``torch.compile`` of the ``networks``. State-dict keys stay the same."""
    if training.sync_bn:
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(networks[0])
    if training.channels_last:
        for module in modules:
            module.to(memory_format=torch.channels_last)
    if training.compile:
        for network in networks:
            network.compile()


def make_sgd(params, training, device):
    """RepDistiller's SGD; ``--sgd_impl auto`` uses the fused kernel on CUDA, foreach elsewhere."""
    impl = training.sgd_impl
    if impl == 'auto':
        impl = 'fused' if device.type == 'cuda' else 'foreach'
    kwargs = {'fused': True} if impl == 'fused' else {'foreach': impl == 'foreach'}
    return torch.optim.SGD(params, lr=training.learning_rate, momentum=training.momentum,
                           weight_decay=training.weight_decay, nesterov=training.nesterov,
                           **kwargs)
