"""WKD (Lv, Yang & Li, "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
Distillation", NeurIPS 2024; JiamingLv/WKD): the Wasserstein distance replaces the KL.

- WKD-L (``wkd_l``): NKD's target term plus gamma x the entropic-OT distance between the
  non-target distributions, under a cost matrix between classes (1 - linear CKA of the
  teacher's per-class features, sharpened), by a fixed number of Sinkhorn iterations (part of
  the loss: it is not run to convergence).
- WKD-F (``wkd_f``): the 2-Wasserstein distance of diagonal Gaussians fitted to the projected
  student's and the teacher's last-stage maps (per cell of a grid), means and deviations.
- ``wkd_lf``: both. The weights gamma and w decay on a cosine after ``--wkd_decay_epoch`` to 0
  at the run's last epoch; the target term is never weighted.

The cost matrix is computed once per run before training, from the teacher's last-stage maps
over the training set (``prepare``), and stored in the run folder, which a resumed run reads
back; or it is given as a file (``--wkd_cost_matrix``, the authors' ``linear_cka.pth`` format:
a C x C tensor of 1 - CKA, sharpened after loading), or taken from the teacher's classifier
(``--wkd_cost fc``). It is also a buffer of the method, so checkpoints carry it."""
import math
import os

import torch
import torch.nn.functional as F

from core.util import UserError, non_negative_float, non_negative_int, positive_float, \
    positive_int
from core.distributed import is_main
from core.files import atomic_open
from dataset.loaders import DeviceLoader
from models.base import evaluating
from models.util import ConvReg
from .base import About, LOGITS, STAGES, Distiller, Needs, register_method
from .NKD import labels_of
from .options import Option
from .pairs import settings_by_pair

COST_FILE = 'wkd_cost_matrix.pt'  # in the run folder: the CKA cost computed for the run
COST_EPSILON = 1e-8  # added to the cost inside the loss (after a ReLU), as the authors do
DIVISION_EPSILON = 1e-8  # of the Sinkhorn updates

SETTING_KEYS = ('T', 'logit_weight', 'feat_weight', 'mean_cov_ratio', 'spatial_grid',
                'decay_epoch')


# {(distill, teacher, student): (T, logit weight, feature weight, mean/cov ratio, grid, decay
# epoch)} of the authors' CIFAR-100 configs; the parts a method lacks are None
WKD_SETTINGS = {(name, *pair): values for name in ('wkd_l', 'wkd_f', 'wkd_lf')
                for pair, values in settings_by_pair('wkd', name, SETTING_KEYS).items()}


def sinkhorn(w1, w2, cost, reg=0.05, max_iter=10):
    """The entropic transport plan (B, N, N) from ``w1`` (B, N) to ``w2`` (B, N) under ``cost``
    (B, N, N): ``max_iter`` alternate scalings from a uniform ``u``, the last one of ``u``, so
    the rows sum to ``w1``; gradients go through every iteration."""
    u = torch.full_like(w1, 1.0 / w1.shape[1]).unsqueeze(2)
    w1, w2 = w1.unsqueeze(2), w2.unsqueeze(2)
    kernel = torch.exp(-cost / reg)
    kernel_t = kernel.transpose(2, 1)
    for _ in range(max_iter):
        v = w2 / (torch.bmm(kernel_t, u) + DIVISION_EPSILON)
        u = w1 / (torch.bmm(kernel, v) + DIVISION_EPSILON)
    return u * kernel * v.transpose(2, 1)


def wkd_logit_loss(logits_student, logits_teacher, temperature, cost_matrix,
                   sinkhorn_lambda=0.05, sinkhorn_iter=10):
    """The batch mean of ``<P, cost>`` between ``softmax(z / T)`` of both (fp32), ``P`` the
    Sinkhorn plan; ``cost_matrix`` (N, N) or per sample (B, N, N). The authors' order; their
    unused signature defaults (lambda 25, 30 iterations) are replaced by their configs'."""
    p_s = F.softmax(logits_student / temperature, dim=-1).float()
    p_t = F.softmax(logits_teacher / temperature, dim=-1).float()
    cost = F.relu(cost_matrix.to(p_s.device)) + COST_EPSILON
    if cost.dim() == 2:
        cost = cost.expand(p_s.shape[0], -1, -1)
    flow = sinkhorn(p_s, p_t, cost, sinkhorn_lambda, sinkhorn_iter)
    return (flow * cost).sum((1, 2)).mean()


def wkd_logit_loss_with_speration(logits_student, logits_teacher, gt_label, temperature, gamma,
                                  cost_matrix, sinkhorn_lambda=0.05, sinkhorn_iter=10):
    """WKD-L (the authors' spelling; also ``wkd_logit_loss_with_separation``): NKD's target
    term at T 1 plus ``gamma`` x the transport distance of the non-target classes, the label's
    row and column removed from the cost."""
    label = labels_of(gt_label)[:, None]
    n, classes = logits_student.shape
    target_s = F.log_softmax(logits_student, 1).gather(1, label)
    target_t = F.softmax(logits_teacher, 1).gather(1, label).detach()
    loss_target = -(target_t * target_s).mean()
    others = torch.ones_like(logits_student, dtype=torch.bool).scatter_(1, label, False)
    cost = cost_matrix.to(logits_student.device).expand(n, -1, -1)
    cost = cost[others[:, None, :] & others[:, :, None]].reshape(n, classes - 1, classes - 1)
    distance = wkd_logit_loss(logits_student[others].reshape(n, -1),
                              logits_teacher[others].reshape(n, -1), temperature, cost,
                              sinkhorn_lambda, sinkhorn_iter)
    return loss_target + gamma * distance


wkd_logit_loss_with_separation = wkd_logit_loss_with_speration


def adaptive_avg_std_pool2d(input_tensor, out_size=(1, 1), eps=1e-5):
    """Per cell of an ``out_size`` grid (cells as adaptive pooling cuts them, overlapping where
    the side is not divisible): the mean and ``sqrt(unbiased variance + eps)``."""
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    height, width = input_tensor.shape[2:]
    means, stds = [], []
    for a in range(out_h):
        rows = slice(a * height // out_h, math.ceil((a + 1) * height / out_h))
        for b in range(out_w):
            cols = slice(b * width // out_w, math.ceil((b + 1) * width / out_w))
            cell = input_tensor[:, :, rows, cols]
            means.append(cell.mean((2, 3)))
            stds.append(torch.sqrt(cell.var((2, 3)) + eps))
    shape = input_tensor.shape[:2] + (out_h, out_w)
    return torch.stack(means, 2).reshape(shape), torch.stack(stds, 2).reshape(shape)


def wkd_feature_loss(f_s, f_t, eps=1e-5, grid=1):
    """``(mean_loss, cov_loss)``: the squared differences of the Gaussians' means and of their
    deviations, summed over channels and cells, over ``grid^2`` x the batch size."""
    mean_s, std_s = adaptive_avg_std_pool2d(f_s, (grid, grid), eps)
    mean_t, std_t = adaptive_avg_std_pool2d(f_t, (grid, grid), eps)
    scale = grid ** 2 * f_s.shape[0]
    return (F.mse_loss(mean_s, mean_t, reduction='sum') / scale,
            F.mse_loss(std_s, std_t, reduction='sum') / scale)


def linear_CKA_precenter(X, Y):
    """Linear CKA of two (n, d) sample matrices, each centred over its rows first; row k of X
    is paired with row k of Y."""
    X, Y = X - X.mean(0, keepdim=True), Y - Y.mean(0, keepdim=True)
    return (Y.t() @ X).norm() ** 2 / ((X.t() @ X).norm() * (Y.t() @ Y).norm())


def sharpened(distance, sharpen=1.0):
    """``1 - exp(-sharpen d)``; ``sharpen`` 0 leaves ``d``."""
    return 1 - torch.exp(-sharpen * distance) if sharpen else distance


def cka_cost_matrix(class_feats, sharpen=1.0):
    """The sharpened C x C cost ``1 - CKA`` of the classes' feature matrices ``class_feats``
    (C, n, D), zero on the diagonal: ``linear_CKA_precenter`` of every pair, each class
    centred and its own norm taken once."""
    centred = class_feats - class_feats.mean(1, keepdim=True)
    norms = torch.stack([(x.t() @ x).norm() for x in centred])
    classes = class_feats.shape[0]
    distance = torch.zeros(classes, classes, dtype=class_feats.dtype, device=class_feats.device)
    for i in range(classes):
        for j in range(i + 1, classes):  # on the features' device, no host round trip
            cka = (centred[j].t() @ centred[i]).norm() ** 2 / (norms[i] * norms[j])
            distance[i, j] = distance[j, i] = 1 - cka
    return sharpened(distance, sharpen)


@torch.no_grad()
def teacher_class_features(teacher, loader, classes):
    """(C, n H W, D): each class's last-stage maps of the teacher (``feats[-2]``) over the
    training set of ``loader`` in data-set order, without augmentation, rows (image, position)
    image-major, every class cut to the smallest class's image count (so that rows pair up);
    and the classes it has, those with images."""
    if not hasattr(loader.dataset, 'images'):
        raise UserError('WKD-L computes its CKA cost from a data set held in memory (CIFAR, '
                        'synthetic); for this one give --wkd_cost_matrix PATH or --wkd_cost fc')
    plain = DeviceLoader(loader.dataset, loader.batch_size, loader.device, loader.mean,
                         loader.std, train=False)
    with evaluating(teacher):
        maps = torch.cat([teacher(batch.image, is_feat=True)[0][-2].float()
                          for batch in plain])
    rows = maps.permute(0, 2, 3, 1).flatten(1, 2)  # (N, H W, D)
    targets = torch.as_tensor(loader.dataset.targets, device=rows.device)
    members = [torch.nonzero(targets == c).flatten() for c in range(classes)]
    present = [c for c, m in enumerate(members) if len(m)]
    count = min(len(members[c]) for c in present)
    return torch.stack([rows[members[c][:count]].flatten(0, 1) for c in present]), present


def cka_distance_of_teacher(teacher, loader, classes):
    """The unsharpened C x C ``1 - CKA`` of the teacher's class features; a class without
    training images is at distance 1 from every other."""
    feats, present = teacher_class_features(teacher, loader, classes)
    distance = 1 - torch.eye(classes)
    index = torch.tensor(present)
    distance[index[:, None], index[None, :]] = cka_cost_matrix(feats, sharpen=0).cpu()
    return distance


def fc_cost_matrix(fc_weight, sharpen=1.0):
    """The sharpened cost ``1 - cos`` between the rows of a classifier's weight (C, D)."""
    rows = F.normalize(fc_weight, p=2, dim=-1)
    return sharpened(1 - rows @ rows.t(), sharpen)


def load_cost_matrix(path, classes):
    """The authors' cost file: a torch-saved C x C tensor (refused in one line otherwise)."""
    if not os.path.isfile(path):
        raise UserError(f"--wkd_cost_matrix '{path}' does not exist")
    try:
        cost = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # a file torch cannot read, whatever the reason
        raise UserError(f"--wkd_cost_matrix '{path}' is not a torch-saved tensor ({error})")
    if not torch.is_tensor(cost) or tuple(cost.shape) != (classes, classes):
        raise UserError(f"--wkd_cost_matrix '{path}' must hold a {classes} x {classes} tensor "
                        f"(one row per class), not {getattr(cost, 'shape', type(cost))}")
    return cost.float()


def cosine_decayed(weight, epoch, decay_epoch, epochs):
    """``weight`` until ``decay_epoch``, then ``weight/2 (1 + cos(pi (e - e0) / (E - e0)))``."""
    if epoch is None or epoch <= decay_epoch:
        return weight
    return 0.5 * weight * (1 + math.cos(math.pi * (epoch - decay_epoch) / (epochs - decay_epoch)))


def _pair_option(flag, key, kind, help):
    return Option(flag, type=kind, default=None, pair_default=('wkd', None, key),
                  help=f'WKD: {help}; default: the authors\' value for the pair')


T_OPTION = _pair_option('--wkd_T', 'T', positive_float, 'temperature of the transport term')
LOGIT_WEIGHT = _pair_option('--wkd_logit_weight', 'logit_weight', non_negative_float,
                            'weight gamma of the transport term')
FEAT_WEIGHT = _pair_option('--wkd_feat_weight', 'feat_weight', non_negative_float,
                           'weight of the feature term')
RATIO = _pair_option('--wkd_mean_cov_ratio', 'mean_cov_ratio', non_negative_float,
                     'weight of the means against the deviations in the feature term')
GRID = _pair_option('--wkd_spatial_grid', 'spatial_grid', positive_int,
                    'cells per side of the grid the Gaussians are fitted on')
DECAY = _pair_option('--wkd_decay_epoch', 'decay_epoch', non_negative_int,
                     'the epoch after which the weights decay on a cosine to 0 at the last')
LOGIT_OPTIONS = (
    T_OPTION, LOGIT_WEIGHT,
    Option('--wkd_sinkhorn_lambda', type=positive_float, default=0.05,
           help='WKD: entropic regularisation lambda of the Sinkhorn iterations'),
    Option('--wkd_sinkhorn_iter', type=positive_int, default=10,
           help='WKD: Sinkhorn iterations (part of the loss: not run to convergence)'),
    Option('--wkd_sharpen', type=non_negative_float, default=1.0,
           help='WKD: the cost becomes 1 - exp(-k cost) (0: as it is)'),
    Option('--wkd_cost', choices=['cka', 'fc'], default='cka',
           help='WKD: cost between classes: 1 - linear CKA of the teacher\'s class features '
                '(a file, --wkd_cost_matrix), or 1 - cosine of its classifier\'s rows'),
    Option('--wkd_cost_matrix', type=str, default=None,
           help='WKD: the 1 - CKA cost file (the authors\' wkd_cost_matrix/.../linear_cka.pth '
                'format: a C x C tensor)'))
FEATURE_OPTIONS = (FEAT_WEIGHT, RATIO, GRID,
                   Option('--wkd_eps', type=positive_float, default=1e-5,
                          help='WKD: added to the variances of the feature term'))


@register_method('wkd_l')
class WKDL(Distiller):
    about = About('WKD-L (Lv et al., NeurIPS 2024)', 'logits, labels', 'cost matrix')
    # CE 1 + b x (target term + decayed gamma x transport distance)
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}))
    options = LOGIT_OPTIONS + (DECAY,)
    parts = ('wkd_l',)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.o, self.epochs = config.options, config.epochs
        student_out, teacher_out = self.probe(config.image_size)
        if 'wkd_l' in self.parts:
            classes = teacher_out.logits.shape[1]
            self.from_data = self.o.wkd_cost == 'cka' and self.o.wkd_cost_matrix is None
            if self.o.wkd_cost_matrix is not None:
                cost = sharpened(load_cost_matrix(self.o.wkd_cost_matrix, classes),
                                 self.o.wkd_sharpen)
            elif self.from_data:  # computed in prepare, before training
                cost = torch.zeros(classes, classes)
            else:
                cost = fc_cost_matrix(self.teacher_net.get_classifier().weight.detach().float(),
                                      self.o.wkd_sharpen)
            self.register_buffer('cost', cost)
        if 'wkd_f' in self.parts:
            self.projector = ConvReg(student_out.feats[-2].shape, teacher_out.feats[-2].shape,
                                     use_relu=True)

    def prepare(self, train_loader, run_dir):
        """The CKA cost, once per run: read back from the run folder (a resumed run), else
        computed from the teacher over the training set and stored there (unsharpened, the
        authors' file format, which --wkd_cost_matrix reads)."""
        if 'wkd_l' not in self.parts or not self.from_data:
            return
        path = os.path.join(run_dir, COST_FILE)
        if os.path.isfile(path):
            distance = load_cost_matrix(path, self.cost.shape[0])
        else:
            distance = cka_distance_of_teacher(self.teacher_net, train_loader,
                                               self.cost.shape[0])
            if is_main():
                with atomic_open(path) as f:
                    torch.save(distance.cpu(), f)
        self.cost.copy_(sharpened(distance, self.o.wkd_sharpen).to(self.cost.device))

    def describe(self):
        o, lines = self.o, []
        if 'wkd_l' in self.parts:
            source = o.wkd_cost_matrix or ('the teacher\'s CKA over the training set'
                                           if self.from_data else 'the teacher\'s classifier')
            lines.append(f'transport term x {o.wkd_logit_weight:g} at T {o.wkd_T:g}, '
                         f'{o.wkd_sinkhorn_iter} Sinkhorn iterations at lambda '
                         f'{o.wkd_sinkhorn_lambda:g}, cost from {source}')
        if 'wkd_f' in self.parts:
            lines.append(f'feature term x {o.wkd_feat_weight:g} (means x '
                         f'{o.wkd_mean_cov_ratio:g}), grid {o.wkd_spatial_grid}')
        return '; '.join(lines) + f'; cosine decay after epoch {o.wkd_decay_epoch}'

    def decayed(self, weight):
        return cosine_decayed(weight, self.epoch, self.o.wkd_decay_epoch, self.epochs)

    def kd_loss(self, s, t, batch):
        o, terms = self.o, {}
        if 'wkd_l' in self.parts:
            terms['wkd_l'] = wkd_logit_loss_with_speration(
                s.logits.float(), t.logits.float(), batch.target, o.wkd_T,
                self.decayed(o.wkd_logit_weight), self.cost, o.wkd_sinkhorn_lambda,
                o.wkd_sinkhorn_iter)
        if 'wkd_f' in self.parts:
            mean, cov = wkd_feature_loss(self.projector(s.feats[-2]).float(),
                                         t.feats[-2].float(), o.wkd_eps, o.wkd_spatial_grid)
            terms['wkd_f'] = self.decayed(o.wkd_feat_weight) * (o.wkd_mean_cov_ratio * mean
                                                                 + cov)
        return terms


@register_method('wkd_f')
class WKDF(WKDL):
    about = About('WKD-F (Lv et al., NeurIPS 2024)', 'last-stage maps', 'projector')
    # CE 1 + b x decayed w x (ratio x mean term + deviation term)
    needs = Needs(weights=(1.0, 0.0, 1.0), student_reads=frozenset({LOGITS, STAGES}),
                  teacher_reads=frozenset({LOGITS, STAGES}))
    options = FEATURE_OPTIONS + (DECAY,)
    parts = ('wkd_f',)


@register_method('wkd_lf')
class WKDLF(WKDL):
    about = About('WKD-L+F (Lv et al., NeurIPS 2024)', 'logits, labels, last-stage maps',
                  'cost matrix, projector')
    needs = WKDF.needs
    options = LOGIT_OPTIONS + FEATURE_OPTIONS + (DECAY,)
    parts = ('wkd_l', 'wkd_f')
