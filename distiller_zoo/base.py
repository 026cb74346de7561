"""The method registry and the base recipe every distillation method extends.

A method is one file in ``distiller_zoo/``: its loss module (RepDistiller's class name where
one exists) and a ``Distiller`` subclass registered under its ``--distill`` name(s). The subclass
declares what it consumes and adds, and computes its loss term; the training loop only calls
``forward_train`` / ``forward_test`` and sums the returned dict of named loss terms.
"""
from types import SimpleNamespace
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

METHODS = {}


class NetOutput(NamedTuple):
    """One network's outputs for a batch: the contract's feature list, the logits, and (for
    methods with ``uses_head_map``) the map its classifier pools."""
    feats: list
    logits: torch.Tensor
    head_map: Optional[torch.Tensor] = None


def register_method(*names):
    """Register a ``Distiller`` subclass under its ``--distill`` name and aliases."""
    def decorator(cls):
        for name in names:
            assert name not in METHODS, f'--distill {name} registered twice'
            METHODS[name] = cls
        cls.names = names
        return cls
    return decorator


def get_method(name):
    if name not in METHODS:
        raise KeyError(f"unknown --distill '{name}'; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


class DistillKL(nn.Module):
    """Hinton's KD: ``T^2 * KL(softmax(y_t/T) || softmax(y_s/T))`` summed over classes and
    averaged over the batch."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def forward(self, y_s, y_t):
        log_p_s = F.log_softmax(y_s / self.T, dim=1)
        log_p_t = F.log_softmax(y_t / self.T, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, reduction='sum', log_target=True)
        return kl * self.T ** 2 / y_s.shape[0]


class Distiller(nn.Module):
    """Student + frozen teacher + the method's own modules.

    Class attributes a method sets:
      ``default_weights``: ``(gamma, alpha, beta)``, the ``-r/-a/-b`` used when not given (a
      fourth entry: the method has a ``-d`` weight, ``delta``, of its own);
      ``data_variant``: ``'instance'`` (batches carry the sample index) or ``'sample'``
      (index and CRD's contrast indices);
      ``preact``: read pre-activation features;
      ``uses_head_map``: ``kd_loss`` also receives ``head_s``/``head_t``, the maps the
      student's and the teacher's classifiers pool (see ``models.base``);
      ``uses_target``: ``kd_loss`` also receives the labels (``target``);
      ``full_batches_only``: the training loop skips a batch smaller than ``--batch_size`` (the
      last one of an epoch), for modules sized by the batch;
      ``teacher_frozen``: False for methods that train the second network too (DML);
      ``rotation_views``: training batches hold each image's four rotations, (B, 4, C, H, W);
      ``teacher_outputs``: what the method reads of the teacher; a method that reads only
      ``'logits'`` and ``'embedding'`` (the pooled feature) can train from the teacher-output
      cache (``--teacher_cache``), which then stands in for the teacher's forward;
      ``student_predicts``: False for methods whose ``forward_test`` goes through their own
      modules (e.g. a copy of the teacher's classifier); their checkpoints carry those modules
      and the options needed to rebuild them, so they evaluate without the teacher's file.
    A method overrides ``kd_loss`` (the ``-b`` term: one loss, or a dict of named terms, each
    weighted by ``-b`` and logged on its own). Its modules, created in ``__init__``, are
    trained with the student, except those listed in ``self.frozen`` (kept in eval mode, out of
    the optimizer). A two-stage method also overrides ``init_modules`` and ``init_loss``: its
    init stage trains those modules on that loss before distillation starts. A method lists the
    command-line options it reads in ``options`` (``distiller_zoo.options.Option``) and says
    what it uses in ``describe``.
    """
    default_weights = (1.0, 0.0, 0.0)
    data_variant = 'instance'
    preact = False
    uses_head_map = False
    uses_target = False
    full_batches_only = False
    teacher_frozen = True
    rotation_views = False
    teacher_outputs = ('logits', 'feature maps')
    student_predicts = True
    options = ()

    @classmethod
    def check_options(cls, opt):
        """Refuse (``UserError``) option values this method cannot work with."""

    @classmethod
    def option_values(cls, opt):
        """``{dest: value}`` of the options this method reads."""
        return {o.dest: getattr(opt, o.dest) for o in cls.options}

    @classmethod
    def changed_options(cls, opt):
        """The method's options whose values differ from their defaults, in order."""
        return {o.dest: getattr(opt, o.dest) for o in cls.options
                if getattr(opt, o.dest) != o.default}

    def describe(self):
        """A line on the method's own settings, printed at start ('' when it has none)."""
        return ''

    def __init__(self, student, teacher, opt, image_size=32):
        super().__init__()
        self.options = dict(vars(opt), image_size=image_size)
        self.student = student
        self.teacher = teacher.eval().requires_grad_(not self.teacher_frozen)
        self.gamma, self.alpha, self.beta = opt.gamma, opt.alpha, opt.beta
        self.criterion_cls = nn.CrossEntropyLoss()
        self.criterion_div = DistillKL(opt.kd_T)
        self.frozen = []  # method modules that are fixed during distillation
        self.epoch = None  # the current epoch (from 1), for warm-ups; set by the training loop
        # With CKD's coded teacher inputs, a batch holds both views, (B, 2, C, H, W).
        self.coded_teacher = False
        self.teacher_store = None  # helper.teacher_cache.TeacherStore with --teacher_cache

    def set_epoch(self, epoch):
        self.epoch = epoch
        if self.teacher_store is not None:
            self.teacher_store.set_epoch(epoch)

    def warmup_weight(self, epochs):
        """``min(epoch / epochs, 1)``: a term's linear warm-up over the first ``epochs`` epochs
        (counted from 1, as the authors do); 1 without warm-up or outside the training loop."""
        if not epochs or self.epoch is None:
            return 1.0
        return min(self.epoch / epochs, 1.0)

    def train(self, mode=True):
        super().train(mode)
        for module in [self.teacher] * self.teacher_frozen + self.frozen:
            module.eval()  # a frozen teacher's BN statistics never move
        return self

    @torch.no_grad()
    def probe(self, image_size):
        """Student's and teacher's ``NetOutput`` for a random 2-image batch (to size modules)."""
        x = torch.randn(2, 3, image_size, image_size)
        modes = self.student.training, self.teacher.training
        self.student.eval(), self.teacher.eval()
        outputs = self.run_network(self.student, x), self.run_network(self.teacher, x)
        self.student.train(modes[0]), self.teacher.train(modes[1])
        return outputs

    def probe_features(self, image_size):
        """Feature lists of student and teacher for a random 2-image batch."""
        student, teacher = self.probe(image_size)
        return student.feats, teacher.feats

    def trainable_parameters(self):
        frozen = {id(p) for m in self.frozen for p in m.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]

    def init_modules(self):
        """The modules a two-stage method trains in its init stage, or ``None``."""
        return None

    def init_learning_rate(self, opt):
        return opt.learning_rate

    def init_loss(self, feat_s, feat_t):
        raise NotImplementedError

    def forward_init(self, image):
        """Loss of one init-stage batch: student and teacher features, no CE or KL."""
        feat_s, _ = self.student(image, is_feat=True, preact=self.preact)
        with torch.no_grad():
            feat_t, _ = self.teacher(image, is_feat=True, preact=self.preact)
        return self.init_loss(feat_s, feat_t)

    def run_network(self, net, image):
        if self.uses_head_map:
            return NetOutput(*net(image, is_feat=True, preact=self.preact, with_head_map=True))
        return NetOutput(*net(image, is_feat=True, preact=self.preact))

    def split_views(self, image):
        """``(student input, teacher input)``: the same batch, or with CKD the clean and the
        coded views."""
        return image.unbind(1) if self.coded_teacher else (image, image)

    def forward_nets(self, image, index=None):
        """The student's and the (frozen, gradient-free) teacher's outputs of one batch; with
        the teacher-output cache, the teacher's are looked up by sample ``index``."""
        image_s, image_t = self.split_views(image)
        student = self.run_network(self.student, image_s)
        if self.teacher_store is not None:
            return student, self.teacher_store.lookup(index)
        with torch.no_grad():
            teacher = self.run_network(self.teacher, image_t)
        return student, teacher

    def base_losses(self, logit_s, logit_t, target):
        """The ``-r`` (cross-entropy) and ``-a`` (KL) terms."""
        return {'cls': self.gamma * self.criterion_cls(logit_s, target),
                'div': self.alpha * self.criterion_div(logit_s, logit_t)}

    def add_method_loss(self, losses, loss_kd):
        """Weight the method's term(s) by ``-b`` into ``losses``."""
        if isinstance(loss_kd, dict):
            losses.update({f'kd_{name}': self.beta * value for name, value in loss_kd.items()})
        elif loss_kd is not None:
            losses['kd'] = self.beta * loss_kd
        return losses

    def forward_train(self, image, target, index=None, contrast_idx=None):
        """Return the student's logits and the weighted loss terms of one batch."""
        s, t = self.forward_nets(image, index)
        extra = {'head_s': s.head_map, 'head_t': t.head_map} if self.uses_head_map else {}
        if self.uses_target:
            extra['target'] = target
        loss_kd = self.kd_loss(s.feats, t.feats, s.logits, t.logits, index=index,
                               contrast_idx=contrast_idx, **extra)
        return s.logits, self.add_method_loss(self.base_losses(s.logits, t.logits, target),
                                              loss_kd)

    forward = forward_train  # what DistributedDataParallel calls

    def kd_loss(self, feat_s, feat_t, logit_s, logit_t, index=None, contrast_idx=None):
        """The method's own term (weighted by ``-b``); ``None`` when it has none."""
        return None

    def forward_test(self, image):
        return self.student(image)

    def prediction_features(self, image):
        """The vector the prediction's final linear layer takes (a linear probe reads it): the
        student's pooled embedding, unless the method predicts through modules of its own."""
        return self.student(image, is_feat=True)[0][-1]

    def extra_predictors(self):
        """Other networks the training loop also evaluates each epoch, by name (DML's peer)."""
        return {}

    def load_checkpoint_state(self, state):
        self.student.load_state_dict(state['model'])
        missing, unexpected = self.load_state_dict(state.get('method_state', {}), strict=False)
        missing = [k for k in missing if not k.startswith(('student.', 'teacher.'))]
        if missing or unexpected:
            raise RuntimeError(f'method state differs (missing {missing[:3]}, unexpected '
                               f'{unexpected[:3]}); was it written by another --distill?')

    def checkpoint_state(self):
        """The student under RepDistiller's ``'model'`` key; the method's own modules (connectors,
        memory banks) under ``'method_state'``."""
        state = {'model': self.student.state_dict()}
        if not self.student_predicts:
            state['method_opt'] = self.options
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


def with_embedding_dims(opt, feat_s, feat_t):
    """``opt`` plus ``s_dim``/``t_dim``, the embedding sizes the authors' losses read from it."""
    return SimpleNamespace(**vars(opt), s_dim=feat_s[-1].shape[1], t_dim=feat_t[-1].shape[1])
