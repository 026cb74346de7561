"""The typed settings a run is made with, resolved once from the parsed command line. The
training loop, the optimizers and the speed options read ``TrainingConfig``, not the parsed
options."""
import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How a run trains (its batches are ``DataConfig``'s): its schedule (``learning_rate``
    decayed by ``lr_decay_rate`` after each of ``lr_decay_epochs``), its optimizer (``opt``:
    None for RepDistiller's SGD, with ``nesterov`` for its momentum, else a strategy of
    ``helper.optimizers`` or a timm optimizer; ``opt_args``: the strategy's own options,
    ``(name, value)`` pairs), checkpoints every ``save_freq`` epochs, and the speed options
    (``amp``, ``channels_last``, ``compile``, ``sgd_impl``, ``sync_bn``)."""
    epochs: int
    learning_rate: float
    lr_decay_epochs: Tuple[int, ...]
    lr_decay_rate: float
    weight_decay: float
    momentum: float
    save_freq: int
    nesterov: bool = False
    max_grad_norm: Optional[float] = None
    amp: str = 'off'
    channels_last: bool = False
    compile: bool = False
    sgd_impl: str = 'auto'
    sync_bn: bool = False
    opt: Optional[str] = None
    opt_args: Tuple[Tuple[str, object], ...] = ()
    schedule: str = 'step'
    warmup_epochs: int = 0
    warmup_lr: float = 0.0
    min_lr: float = 0.0
    smoothing: float = 0.0

    @classmethod
    def of(cls, opt, opt_args=()):
        """The training settings of parsed options (a script without an option gets the
        field's default) and the optimizer strategy's own options."""
        values = {f.name: getattr(opt, f.name) for f in dataclasses.fields(cls)
                  if hasattr(opt, f.name)}
        values['lr_decay_epochs'] = tuple(values['lr_decay_epochs'])
        return cls(**values, opt_args=tuple(opt_args))


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The recipes' further training augmentation (timm's): mixup and CutMix (``mixup``,
    ``cutmix``: their Beta alphas; the labels mixed and smoothed by ``smoothing``), random
    erasing (probability ``reprob``) and RandAugment (``randaugment``: timm's config string);
    None where a run has none."""
    mixup: float = 0.0
    cutmix: float = 0.0
    smoothing: float = 0.0
    reprob: float = 0.0
    randaugment: Optional[str] = None

    @classmethod
    def of(cls, opt):
        values = {f.name: getattr(opt, f.name) for f in dataclasses.fields(cls)
                  if hasattr(opt, f.name)}
        augment = cls(**values)
        return augment if (augment.mixup or augment.cutmix or augment.reprob
                           or augment.randaugment) else None

    @property
    def mixes(self):
        return bool(self.mixup or self.cutmix)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What a run reads: the data set (``--dataset``, under ``data_folder``), its batches
    (``batch_size``, ``num_workers`` loading processes) and how they are made (``loader``,
    ``dali``, ``img_size``: the side the networks see, None for the data set's own)."""
    dataset: str
    data_folder: str
    batch_size: int
    num_workers: int
    loader: str = 'device'
    dali: Optional[str] = None
    img_size: Optional[int] = None
    augment: Optional[Augmentation] = None

    @classmethod
    def of(cls, opt):
        values = {f.name: getattr(opt, f.name) for f in dataclasses.fields(cls)
                  if hasattr(opt, f.name)}
        values['augment'] = Augmentation.of(opt)
        return cls(**values)

    def loader_options(self):
        """The keyword arguments of ``dataset.build_loaders`` these settings give."""
        return dict(data_folder=self.data_folder, batch_size=self.batch_size,
                    num_workers=self.num_workers, loader=self.loader, dali=self.dali,
                    img_size=self.img_size, augment=self.augment)


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """Where a run writes (``save_dir``), what it continues (``resume``: None, 'auto' or a
    checkpoint), the seed given (None: a new random one) and whether it also logs to W&B."""
    save_dir: str
    resume: Optional[str] = None
    seed: Optional[int] = None
    wandb: bool = False

    @classmethod
    def of(cls, opt):
        return cls(**{f.name: getattr(opt, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """Where a run's processes run: the GPUs (``gpu_id``, as CUDA_VISIBLE_DEVICES) and SimKD's
    one-process-per-GPU start (``multiprocessing_distributed``, ``dist_url``)."""
    gpu_id: Optional[str] = None
    multiprocessing_distributed: bool = False
    dist_url: str = 'tcp://127.0.0.1:23451'

    @classmethod
    def of(cls, opt):
        """The launch settings of parsed options (a script without an option gets the
        default)."""
        return cls(**{f.name: getattr(opt, f.name) for f in dataclasses.fields(cls)
                      if hasattr(opt, f.name)})
