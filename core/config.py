"""The typed settings a run is made with, resolved once from the parsed command line. The
training loop, the optimizers and the speed options read ``TrainingConfig``, not the parsed
options."""
import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How a run trains: its schedule (``learning_rate`` decayed by ``lr_decay_rate`` after
    each of ``lr_decay_epochs``), its optimizer (``optimizer``: a strategy of
    ``helper.optimizers``; ``dot_delta`` for DOT), checkpoints every ``save_freq`` epochs, and
    the speed options (``amp``, ``channels_last``, ``compile``, ``sgd_impl``, ``sync_bn``)."""
    epochs: int
    batch_size: int
    learning_rate: float
    lr_decay_epochs: Tuple[int, ...]
    lr_decay_rate: float
    weight_decay: float
    momentum: float
    save_freq: int
    max_grad_norm: Optional[float] = None
    optimizer: str = 'sgd'
    dot_delta: Optional[float] = None
    amp: str = 'off'
    channels_last: bool = False
    compile: bool = False
    sgd_impl: str = 'auto'
    sync_bn: bool = False

    @classmethod
    def of(cls, opt):
        """The training settings of parsed options (a script without an option, such as
        train_teacher.py without --optimizer, gets the field's default)."""
        values = {f.name: getattr(opt, f.name) for f in dataclasses.fields(cls)
                  if hasattr(opt, f.name)}
        values['lr_decay_epochs'] = tuple(values['lr_decay_epochs'])
        return cls(**values)
