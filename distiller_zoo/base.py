"""The method registry, the declaration every method makes, and the base every method extends.

A method is one file in ``distiller_zoo/``: its loss module (RepDistiller's class name where
one exists) and a ``Distiller`` subclass registered under its ``--distill`` name(s). The subclass
declares, in its ``needs``, what it needs (what its batches carry, what it reads of each
network, whether the second network trains, ...); loaders, the loop, the teacher plug-ins
(CKD, the teacher-output cache) and the scripts read that declaration. It computes its loss in
``kd_loss(s, t, batch)``, with ``s`` and ``t`` the student's and the teacher's outputs; the
training loop only calls ``forward_train(batch)`` and sums the returned dict of named terms.
"""
import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dataset.batch import BatchSpec
from core.learner import Learner
from models.base import evaluating
from .LSKD import Standardised, normalize, transform_of
from .pairs import pair_settings
from .modifiers import HINTON, PRESETS, LogitKL, Preset, a_term_kl, hinton_kl
from .temperature import learned_temperature

METHODS = {}

# What a method reads of a network's forward (``Needs.student_reads`` / ``teacher_reads``).
LOGITS, EMBEDDING, STAGES = 'logits', 'embedding', 'stages'
PREACT = 'preact'  # the stage outputs before their last ReLU (instead of after it)
HEAD_MAP = 'head_map'  # the map the classifier pools (models.base's head contract)
# A network of tokens (ViT, MLP-Mixer: models.timm_models) gives its stages as token sequences
# (B, L, D), class tokens first, instead of maps.
TOKENS = 'tokens'
# The teacher's BatchNorm layers normalise with the batch's statistics (train mode), their
# running statistics untouched (OFD's authors run the teacher so).
BATCH_STATS = 'batch_stats'
FEATURES = frozenset({LOGITS, EMBEDDING, STAGES})


class NetOutput(NamedTuple):
    """One network's outputs for a batch: the contract's feature list (stem, stages,
    embedding), the logits, and (with ``HEAD_MAP``) the map its classifier pools."""
    feats: list
    logits: torch.Tensor
    head_map: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class Needs:
    """What a method needs, declared once in its class.

    ``weights``: the default ``-r -a -b`` (a fourth entry: the method's own ``-d`` weight);
    ``batch``: what its training batches carry (``dataset.batch.BatchSpec``: CRD's contrast
    indices, several views of each image; a method whose batch depends on its options
    overrides ``Distiller.batch_spec``); ``student_reads`` / ``teacher_reads``: what it reads of
    each network (``LOGITS``, ``EMBEDDING``, ``STAGES``, ``PREACT``, ``HEAD_MAP``, ``TOKENS``,
    ``BATCH_STATS``; a teacher that gives only logits and embeddings can be replaced by the
    teacher-output cache);
    ``teacher_trains``: the second network is trained too (DML); ``full_batches_only``: its
    modules are sized by the batch, so a shorter last batch is skipped; ``student_predicts``:
    False when predictions go through the method's own modules (SimKD), whose checkpoints
    then carry them; ``lskd``: how it takes LSKD's per-pair settings (``LSKD.Standardised``);
    ``pair_table``: ``(source, column)`` of ``distiller_zoo/per_pair/`` holding its authors'
    recipe per pair (epochs, learning rate), where it is not the common one."""
    weights: tuple = (1.0, 0.0, 0.0)
    batch: BatchSpec = field(default_factory=BatchSpec)
    student_reads: frozenset = FEATURES
    teacher_reads: frozenset = FEATURES
    teacher_trains: bool = False
    full_batches_only: bool = False
    student_predicts: bool = True
    lskd: Standardised = Standardised()
    pair_table: Optional[tuple] = None


class About(NamedTuple):
    """A method's line in the methods reference (docs/methods.md, written from the registry by
    scripts/methods_reference.py): its paper, what it reads of the networks, the modules it
    trains beside the student, and what an init stage trains first."""
    paper: str
    reads: str
    adds: str = ''
    init: str = ''


@dataclass(frozen=True)
class MethodConfig:
    """What a method is built from: its ``--distill`` name, the weights ``(-r, -a, -b[, -d])``,
    the KD temperature, its own options' values (``options.<dest>``, of the method's
    ``options_class()``; a per-pair default is the pair's value), the architectures, the
    input side and the training set's size and batch size (for modules sized by them), and the
    modifiers of its logit KLs: ``logit_stand`` (LSKD) and ``learned_T`` (CTKD's
    ``LearnedTemperature`` arguments, None for a fixed temperature); what the ``-a`` term is
    (``add``: Hinton's KD, or TTM's or WTTM's divergence with the teacher's power ``ttm_l``). A
    checkpoint of a method that predicts through its own modules stores it (``as_dict``)."""
    name: str
    weights: tuple
    kd_T: float
    options: object
    model_s: str
    model_t: str
    image_size: int = 32
    n_data: int = 0
    batch_size: int = 64
    logit_stand: bool = False
    learned_T: Optional[dict] = None
    add: str = 'kd'
    ttm_l: float = 0.1
    smoothing: float = 0.0  # label smoothing of the cross-entropy term
    epochs: int = 240  # the run's, for weights decayed towards its end (WKD)

    def as_dict(self):
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__},
                'weights': list(self.weights), 'options': vars(self.options)}

    @classmethod
    def from_dict(cls, values):
        options = METHODS[values['name']].typed_options(values['options'])
        return cls(**{**values, 'weights': tuple(values['weights']), 'options': options})


def register_method(*names):
    """Register a ``Distiller`` subclass under its ``--distill`` name and aliases."""
    def decorator(cls):
        for name in names:
            assert name not in METHODS, f'--distill {name} registered twice'
            METHODS[name] = cls
        cls.names = names
        return cls
    return decorator


def register_preset(name, method, lskd_column=None, about=None, **modifiers):
    """``--distill name``: the registered ``method`` with ``modifiers`` on (``Preset``)."""
    assert name not in METHODS, f'--distill {name} registered twice'
    METHODS[name] = METHODS[method]
    PRESETS[name] = Preset(name, method, modifiers, lskd_column, about)


def get_method(name):
    if name not in METHODS:
        raise KeyError(f"unknown --distill '{name}'; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


class DistillKL(nn.Module):
    """Hinton's KD: ``T^2 * KL(softmax(y_t/T) || softmax(y_s/T))`` summed over classes and
    averaged over the batch. ``T`` (here, or per call) may be a tensor: of shape (1,), a learned
    temperature (CTKD), or (B,), one per sample (the batch mean of ``T_i^2 KL_i``).
    ``logit_stand``: both logits are standardised first (LSKD's ``normalize``). RepDistiller's
    and LSKD's name; methods take their KLs from ``Distiller.logit_kl``."""

    def __init__(self, T, logit_stand=False):
        super().__init__()
        self.T, self.logit_stand = T, logit_stand

    def forward(self, y_s, y_t, T=None):
        if self.logit_stand:
            y_s, y_t = normalize(y_s), normalize(y_t)
        return hinton_kl(y_s, y_t, self.T if T is None else T)


def run_network(net, image, reads):
    """``net``'s ``NetOutput`` for ``image``, with what ``reads`` asks of it."""
    extra = {'tokens': True} if TOKENS in reads else {}
    with batch_statistics(net) if BATCH_STATS in reads else contextlib.nullcontext():
        return NetOutput(*net(image, is_feat=True, preact=PREACT in reads,
                              with_head_map=HEAD_MAP in reads, **extra))


@contextlib.contextmanager
def batch_statistics(net):
    """``net``'s BatchNorm layers in train mode (batch statistics) with momentum 0, so their
    running statistics stay as they are; modes and counters restored afterwards."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.momentum, None if m.num_batches_tracked is None
              else m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.train()
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (training, momentum, count) in zip(layers, saved):
            m.train(training)
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class Distiller(Learner):
    """Student + teacher (a ``distiller_zoo.sources.TeacherSource``) + the method's modules.

    A method sets ``needs`` and ``options`` (the command-line options it reads,
    ``distiller_zoo.options.Option``), builds its modules in ``__init__`` (sized with
    ``self.probe(config.image_size)``), and overrides ``kd_loss`` (the ``-b`` term: one loss,
    or a dict of named terms, each weighted by ``-b`` and logged on its own). Its modules are
    trained with the student, except those listed in ``self.frozen`` (kept in eval mode, out of
    the optimizer). A two-stage method also overrides ``init_stage`` and ``init_loss``; a method
    whose loss terms are not the usual three overrides ``losses``; one that predicts through
    its own modules overrides ``forward_test`` and ``prediction_features``.
    """
    needs = Needs()
    options = ()
    about = None  # its line in the methods reference (About)
    # The weights (-a: 'alpha', -b: 'beta') of its terms that are logit KLs, which LSKD and
    # CTKD modify; a modifier acts only if one of them is positive.
    logit_kl_weights = ('alpha',)
    # Whether its -a term is the base's KL, which --add can make TTM's or WTTM's.
    a_term_is_kd = True
    # Whether its own term reads --ttm_l (TTM's power of the teacher's probabilities).
    reads_ttm_l = False

    @classmethod
    def batch_spec(cls, options):
        """What the training batches carry, given the method's option values (``options``
        has at least the attributes of ``cls.options``)."""
        return cls.needs.batch

    @classmethod
    def check_options(cls, config):
        """Refuse (``UserError``) what this method cannot work with in its ``MethodConfig``."""

    @classmethod
    def run_defaults(cls, teacher, student):
        """The authors' recipe for a pair (``needs.pair_table``): ``{dest: value}`` for
        options the command line does not give (``teacher`` may be None: unknown)."""
        return pair_settings(*cls.needs.pair_table, teacher, student) \
            if cls.needs.pair_table else {}

    @classmethod
    def resolved_options(cls, options, teacher, student):
        """The method's option values (a dict) as it uses them for a pair: those left to None
        that have a per-pair default (``Option.pair_default``; its column None: the one named
        after the method, for an option that several methods read from tables of their own)
        filled in."""
        options = dict(options)
        for option in cls.options:
            if option.pair_default and options.get(option.dest, 0) is None:
                source, column, key = option.pair_default
                value = pair_settings(source, column or cls.names[0], teacher, student)[key]
                convert = option.kwargs.get('type')
                options[option.dest] = convert(value) if convert else value
        return options

    @classmethod
    def option_values(cls, opt):
        """``{dest: value}`` of the options this method reads."""
        return {o.dest: getattr(opt, o.dest) for o in cls.options}

    @classmethod
    def options_class(cls):
        """The frozen dataclass of the method's own options (``<Name>Options``), one field per
        ``Option``, with its default."""
        if '_options_class' not in cls.__dict__:
            fields = [(o.dest, type(o.default) if o.default is not None else Optional[object],
                       dataclasses.field(default_factory=lambda d=o.default: copy.copy(d)))
                      for o in cls.options]
            cls._options_class = dataclasses.make_dataclass(f'{cls.__name__}Options', fields,
                                                            frozen=True)
        return cls._options_class

    @classmethod
    def typed_options(cls, values):
        """The method's options of ``values`` (a dict; an older run's may lack some, or hold
        options the method no longer reads)."""
        own = {o.dest for o in cls.options}
        return cls.options_class()(**{k: v for k, v in values.items() if k in own})

    @classmethod
    def changed_options(cls, opt):
        """The method's options whose values differ from their defaults, in order."""
        return {o.dest: getattr(opt, o.dest) for o in cls.options
                if getattr(opt, o.dest) != o.default}

    def describe(self):
        """A line on the method's own settings, printed at start ('' when it has none)."""
        return ''

    def __init__(self, student, teacher, config):
        super().__init__()
        self.config = config
        self.student = student
        self.teacher = teacher
        self.gamma, self.alpha, self.beta = config.weights[:3]
        self.criterion_cls = nn.CrossEntropyLoss(label_smoothing=config.smoothing)
        # the run's learned temperature, if any (saved and trained with the method)
        self.learned_T = learned_temperature(config)
        self.kl = self.logit_kl(*a_term_kl(config.add, config.kd_T, config.ttm_l))  # -a's
        self.frozen = []  # method modules that are fixed during distillation
        self.epoch = None  # the current epoch (from 1), for warm-ups; set by the training loop
        self.views = self.batch_spec(config.options).views
        # what it reads of each network (a method whose reads depend on its options sets them)
        self.student_reads = self.needs.student_reads
        self.teacher_reads = self.needs.teacher_reads

    @property
    def teacher_net(self):
        return self.teacher.network

    @property
    def full_batch(self):
        return self.config.batch_size if self.needs.full_batches_only else None

    def prepare(self, train_loader, run_dir):
        """Work the method does once before training, from the training set (``train_loader``:
        its data set, normalisation and device) and the run folder ``run_dir`` (where a
        resumed run finds what it stored); nothing by default."""

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.teacher.set_epoch(epoch)
        if self.learned_T is not None:
            self.learned_T.set_epoch(epoch)

    def logit_kl(self, T, divergence=HINTON):
        """A logit KL of the method at its own temperature ``T`` (Hinton's, or another
        ``divergence``), as the run's modifiers make it (``distiller_zoo.modifiers.LogitKL``)."""
        return LogitKL(T, transform_of(self.config), self.learned_T, divergence)

    def epoch_metrics(self):
        if self.learned_T is None:
            return {}
        with torch.no_grad():
            return {'temperature': self.learned_T().item()}

    def warmup_weight(self, epochs):
        """``min(epoch / epochs, 1)``: a term's linear warm-up over the first ``epochs`` epochs
        (counted from 1, as the authors do); 1 without warm-up or outside the training loop."""
        if not epochs or self.epoch is None:
            return 1.0
        return min(self.epoch / epochs, 1.0)

    def train(self, mode=True):
        super().train(mode)
        for module in [self.teacher_net] * (not self.teacher.trains) + self.frozen:
            module.eval()  # a frozen teacher's BN statistics never move
        return self

    @torch.no_grad()
    def probe(self, image_size):
        """Student's and teacher's ``NetOutput`` for a random 2-image batch (to size modules),
        with what its needs say it reads of each; a network that lacks a map the method reads is
        refused (``ValueError``)."""
        x = torch.randn(2, 3, image_size, image_size)
        with evaluating(self.student), evaluating(self.teacher_net):
            outputs = (run_network(self.student, x, self.student_reads),
                       run_network(self.teacher_net, x, self.teacher_reads - {BATCH_STATS}))
        for role, reads, out, arch in (('student', self.student_reads, outputs[0],
                                        self.config.model_s),
                                       ('teacher', self.teacher_reads, outputs[1],
                                        self.config.model_t)):
            if HEAD_MAP in reads and out.head_map is None:
                raise ValueError(f'it reads the map the {role}\'s classifier pools, which {arch} '
                                 f'does not give')
        return outputs

    def probe_features(self, image_size):
        """Feature lists of student and teacher for a random 2-image batch."""
        student, teacher = self.probe(image_size)
        return student.feats, teacher.feats

    def trainable_parameters(self):
        frozen = {id(p) for m in self.frozen for p in m.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]

    def init_loss(self, feat_s, feat_t):
        raise NotImplementedError

    def forward_init(self, batch):
        """Loss of one init-stage batch: student and teacher features, no CE or KL. Init stages
        train on ordinary batches, the teacher on the student's images."""
        feat_s = run_network(self.student, batch.image, self.student_reads).feats
        with torch.no_grad():
            feat_t = run_network(self.teacher_net, batch.image, self.teacher_reads).feats
        return self.init_loss(feat_s, feat_t)

    def forward_nets(self, batch):
        """The student's and the teacher's outputs for a batch: one ``NetOutput`` each, or
        with views a list of one per view (all views in one pass for joint views)."""
        views = self.views if batch.image.dim() == 5 else None
        if views is None:
            return (run_network(self.student, batch.image, self.student_reads),
                    self.teacher(batch, self.teacher_reads))
        if views.joint:
            image = batch.image.flatten(0, 1)
            return (run_network(self.student, image, self.student_reads),
                    self.teacher(batch, self.teacher_reads, image))
        images = batch.image.unbind(1)
        return ([run_network(self.student, x, self.student_reads) for x in images],
                [self.teacher(batch, self.teacher_reads, x) for x in images])

    def forward_train(self, batch):
        """The prediction's logits and the weighted loss terms of one batch."""
        return self.losses(*self.forward_nets(batch), batch)

    def losses(self, s, t, batch):
        """``-r`` x CE and ``-a`` x KL on the student's logits, and ``-b`` x the method's
        term(s); returns ``(logits, {name: weighted term})``."""
        return s.logits, self.add_method_loss(
            self.base_losses(s.logits, t.logits, batch.cls_target), self.kd_loss(s, t, batch))

    def base_losses(self, logit_s, logit_t, target):
        """The ``-r`` (cross-entropy) and ``-a`` (KL) terms."""
        return {'cls': self.gamma * self.criterion_cls(logit_s, target),
                'div': self.alpha * self.kl(logit_s, logit_t)}

    def add_method_loss(self, losses, loss_kd):
        """Weight the method's term(s) by ``-b`` into ``losses``."""
        if isinstance(loss_kd, dict):
            losses.update({f'kd_{name}': self.beta * value for name, value in loss_kd.items()})
        elif loss_kd is not None:
            losses['kd'] = self.beta * loss_kd
        return losses

    def kd_loss(self, s, t, batch):
        """The method's own term (weighted by ``-b``) from the student's and the teacher's
        ``NetOutput`` and the batch; ``None`` when it has none."""
        return None

    def forward_test(self, image):
        return self.student(image)

    def prediction_features(self, image):
        """The vector the prediction's final linear layer takes (a linear probe reads it): the
        student's pooled embedding, unless the method predicts through modules of its own."""
        return self.student(image, is_feat=True)[0][-1]

    def load_checkpoint_state(self, state):
        self.student.load_state_dict(state['model'])
        missing, unexpected = self.load_state_dict(state.get('method_state', {}), strict=False)
        missing = [k for k in missing if not k.startswith(('student.', 'teacher.'))]
        if missing or unexpected:
            raise RuntimeError(f'method state differs (missing {missing[:3]}, unexpected '
                               f'{unexpected[:3]}); was it written by another --distill?')

    def checkpoint_state(self):
        """The student under RepDistiller's ``'model'`` key; the method's own modules (connectors,
        memory banks) under ``'method_state'``; for a method that predicts through its own
        modules, what rebuilds it (``'method'``)."""
        state = {'model': self.student.state_dict()}
        if not self.needs.student_predicts:
            state['method'] = self.config.as_dict()
        method_state = {k: v for k, v in self.state_dict().items()
                        if not k.startswith(('student.', 'teacher.'))}
        if method_state:
            state['method_state'] = method_state
        return state


def pool_to_smaller(a, b):
    """Average-pool the larger of two square feature maps to the other's height."""
    h_a, h_b = a.shape[2], b.shape[2]
    if h_a > h_b:
        a = F.adaptive_avg_pool2d(a, (h_b, h_b))
    elif h_a < h_b:
        b = F.adaptive_avg_pool2d(b, (h_a, h_a))
    return a, b


def with_embedding_dims(config, feat_s, feat_t):
    """The method's options plus ``s_dim``/``t_dim``, the embedding sizes, and ``n_data``: the
    ``opt`` the authors' losses read."""
    return SimpleNamespace(**vars(config.options), s_dim=feat_s[-1].shape[1],
                           t_dim=feat_t[-1].shape[1], n_data=config.n_data)
