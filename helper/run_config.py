"""The typed configuration of a distillation run: what ``helper.resolver`` makes, once,
of the command line, the method's defaults, the pair's recipe and the modifiers. After it is
built nothing reads the parsed options."""
import dataclasses
import functools
from types import SimpleNamespace
from typing import Optional

from core.config import DataConfig, LaunchConfig, OutputConfig, TrainingConfig
from core.util import FrozenNamespace
from dataset import DATASETS, data_source
from distiller_zoo.base import MethodConfig
from .distillation import method_config
from .components import COMPONENTS, TEACHER_PLUGINS
from .optimizers import optimizer_args


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The teacher: ``path`` (``--path_t``: a checkpoint, ``torchvision:<name>`` or
    ``timm:<name>``), or, for a peer trained from scratch, none; ``named``: the architecture
    ``--model_t`` gives (the peer's, or that of a file that does not record it); ``arch``: its
    architecture as known before it is loaded (None: the file will tell). ``more``: further
    teachers, whose logits are averaged with the first's by ``weights`` (summing to 1)."""
    path: Optional[str]
    named: Optional[str] = None
    arch: Optional[str] = None
    more: tuple = ()
    weights: tuple = (1.0,)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One distillation run. ``distill`` is the method's name as given (an alias names the
    folder as it did); ``method`` is what the method is built from (``n_data`` is filled in
    once the training set is read); ``features`` holds the teacher plug-ins' options
    (``helper.plugins``); ``options`` is the flat record of every option, as checkpoints and
    summaries store it and a resumed run compares it."""
    model_s: str
    distill: str
    trial: str
    training: TrainingConfig
    data: DataConfig
    output: OutputConfig
    launch: LaunchConfig
    teacher: TeacherConfig
    method: MethodConfig
    features: FrozenNamespace
    options: dict

    @functools.cached_property
    def record(self):
        """``options`` as the namespace the components read."""
        return SimpleNamespace(**self.options)

    @functools.cached_property
    def components(self):
        """The components (``helper.components``) this run enables, in the order they apply."""
        return [component for component in COMPONENTS if component.enabled(self.record)]

    @property
    def plugins(self):
        """The teacher plug-ins this run enables, in the order they apply."""
        return [plugin for plugin in TEACHER_PLUGINS if plugin in self.components]

    @functools.cached_property
    def source(self):
        """The data set's ``dataset.DataSource`` as the run uses it (its class count, the side
        of its images)."""
        return data_source(self.data.dataset, self.data.data_folder, self.data.img_size)

    @classmethod
    def of(cls, opt, model_t, method):
        """The configuration of resolved options ``opt`` (every default filled in) for a
        teacher of architecture ``model_t`` and the method class ``method``."""
        features = {o.dest: getattr(opt, o.dest) for plugin in TEACHER_PLUGINS
                    for o in plugin.options}
        return cls(model_s=opt.model_s, distill=opt.distill, trial=opt.trial,
                   training=TrainingConfig.of(opt, optimizer_args(opt)),
                   data=DataConfig.of(opt),
                   output=OutputConfig.of(opt),
                   launch=LaunchConfig.of(opt),
                   teacher=TeacherConfig(opt.path_t, opt.model_t, model_t,
                                         tuple(opt.more_teachers), teacher_weights(opt)),
                   method=method_config(opt, method, model_t, None,
                                        opt.img_size or DATASETS[opt.dataset].image_size),
                   features=FrozenNamespace(**features),
                   options=dict(vars(opt)))


def teacher_weights(opt):
    """Each teacher's share of the logits: ``--teacher_weights`` normalised, else equal."""
    count = 1 + len(opt.more_teachers)
    weights = opt.teacher_weights or [1.0] * count
    return tuple(w / sum(weights) for w in weights)
