"""IKL and GKL (Cui et al., "Decoupled Kullback-Leibler Divergence Loss", NeurIPS 2024, and
"Generalized Kullback-Leibler Divergence Loss", TPAMI 2026; jiequancui/DKL): the KL taken apart
into a weighted mean squared error of every pair of logit differences (z_i - z_j), student
against teacher, and a soft cross-entropy, each training the student only. The pair weights are
the teacher's softmax at T2, or with class-wise global information (GI) the prior of the
sample's class: the previous epoch's mean teacher distribution over that class's samples
(``ClassPrior``). GKL raises the weights to gamma and normalises the MSE by their sum."""
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int, positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .options import Option
from .pairs import pair_settings, settings_by_pair

# {(teacher, student): (alpha, beta, T)} and {(teacher, student): (alpha, beta, gamma, T2, GI,
# T)} of the authors' CIFAR-100 configs
IKL_SETTINGS = settings_by_pair('dkl', 'ikl', ('alpha', 'beta', 'T'))
GKL_SETTINGS = settings_by_pair('dkl', 'gkl', ('alpha', 'beta', 'gamma', 'T2', 'gi', 'T'))


def weighted_difference_mse(logits_student, logits_teacher, weights, by_weight_sum):
    """``1/4 sum_{b,i,j} w_bi w_bj ((t_bi - t_bj) - (s_bi - s_bj))^2``, over the batch size or
    over the weights' sum. With ``a = t - s`` the pair sum is ``2 W sum_i w_i (a_i - a_w)^2``
    (``W = sum_i w_i``, ``a_w`` the weighted mean of ``a``): O(B C) memory, not B C^2."""
    a = logits_teacher - logits_student
    total = weights.sum(1, keepdim=True)
    mean = (weights * a).sum(1, keepdim=True) / total
    pair_sum = 2 * (total * weights * (a - mean) ** 2).sum()
    return 0.25 * pair_sum / ((total ** 2).sum() if by_weight_sum else a.shape[0])


def soft_cross_entropy(logits_student, logits_teacher, temperature):
    """The batch mean of ``-sum_c softmax(t / T) log softmax(s / T)`` (no T^2)."""
    p_t = F.softmax(logits_teacher / temperature, 1).detach()
    return -(p_t * F.log_softmax(logits_student / temperature, 1)).sum(1).mean()


def pair_weights(logits_teacher, class_prior, gi, T2, gamma=1.0):
    """Each sample's class weights (no gradient): its class prior (GI) or the teacher's softmax
    at T2, raised to ``gamma``."""
    with torch.no_grad():
        if gi:
            if class_prior is None:
                raise ValueError('GI weights need the class prior (CLASS_PRIOR)')
            weights = class_prior
        else:
            weights = F.softmax(logits_teacher / T2, 1)
        return weights.float() ** gamma


def dkl_loss(logits_student, logits_teacher, temperature, alpha, beta, CLASS_PRIOR=None,
             GI=False, T2=100.0):
    """IKL (the authors' v1 name and order): ``beta`` x the weighted MSE of the logit
    differences over the batch size + ``alpha`` x the soft cross-entropy at ``temperature``."""
    return decoupled_kl(logits_student, logits_teacher, temperature, alpha, beta, 1.0,
                        CLASS_PRIOR, GI, T2, by_weight_sum=False)


def gkl_loss(logits_student, logits_teacher, temperature, alpha, beta, gamma, CLASS_PRIOR=None,
             GI=True, T2=1.0):
    """GKL (the authors' v2 ``dkl_loss``, renamed): the weights raised to ``gamma`` and the MSE
    over the weights' sum."""
    return decoupled_kl(logits_student, logits_teacher, temperature, alpha, beta, gamma,
                        CLASS_PRIOR, GI, T2, by_weight_sum=True)


def decoupled_kl(logits_student, logits_teacher, temperature, alpha, beta, gamma, class_prior,
                 gi, T2, by_weight_sum):
    with torch.autocast(logits_student.device.type, enabled=False):
        s, t = logits_student.float(), logits_teacher.float()
        weights = pair_weights(t, class_prior, gi, T2, gamma)
        return (beta * weighted_difference_mse(s, t, weights, by_weight_sum)
                + alpha * soft_cross_entropy(s, t, temperature))


class ClassPrior(nn.Module):
    """Per class, the mean of the teacher's softmax at ``T2`` over that class's training samples
    of the previous epoch (C x C; uniform in the first). ``update`` adds a batch (under
    torch.distributed, every process's share, so that each holds the same sums), ``epoch_end``
    turns the sums into the prior; a class without a sample keeps its row (the authors' 0 / 0
    would give NaN). Buffers: checkpointed with the method, so a resumed run goes on exactly."""

    def __init__(self, num_classes, T2):
        super().__init__()
        self.T2 = T2
        self.register_buffer('prior', torch.full((num_classes, num_classes), 1.0 / num_classes))
        self.register_buffer('sums', torch.zeros(num_classes, num_classes))
        self.register_buffer('epoch', torch.zeros((), dtype=torch.long))  # the sums' epoch

    @torch.no_grad()
    def update(self, logits_teacher, target):
        probabilities = F.softmax(logits_teacher.float() / self.T2, 1)
        added = torch.zeros_like(self.sums).index_add_(0, target, probabilities)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(added)
        self.sums += added

    @torch.no_grad()
    def epoch_end(self):
        counts = self.sums.sum(1, keepdim=True)
        seen = counts[:, 0] > 0
        self.prior[seen] = self.sums[seen] / counts[seen]
        self.sums.zero_()

    def start_epoch(self, epoch):
        """At a new epoch the previous one's sums become the prior (a resumed epoch keeps its
        sums)."""
        if epoch != int(self.epoch):
            if self.sums.any():
                self.epoch_end()
            self.epoch.fill_(epoch)

    def class_prior(self, target):
        """Each sample's row of the prior (``onehot(target) @ prior``)."""
        return self.prior[target]


def column_option(flag, key, kind, what, **more):
    """An option of both methods whose default is the method's own for the pair."""
    ikl, gkl = (pair_settings('dkl', m, None, None)[key] for m in ('ikl', 'gkl'))
    return Option(flag, type=kind, default=None, pair_default=('dkl', None, key), **more,
                  help=f'IKL, GKL: {what}; default: the authors\' value for the pair (IKL '
                       f'{ikl:g}, GKL {gkl:g} elsewhere)')


@register_method('ikl')
class IKL(Distiller):
    about = About('IKL (Cui et al., NeurIPS 2024)', 'logits, labels')
    # CE_WEIGHT 1 x CE + b x warm-up x (beta wMSE + alpha SCE)
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS}))
    by_weight_sum = False  # GKL's MSE is over the weights' sum
    options = (
        column_option('--ikl_alpha', 'alpha', non_negative_float, 'weight of the soft '
                      'cross-entropy'),
        column_option('--ikl_beta', 'beta', non_negative_float, 'weight of the weighted MSE of '
                      'the logit differences'),
        column_option('--ikl_T', 'T', positive_float, 'temperature of the soft cross-entropy'),
        column_option('--ikl_T2', 'T2', positive_float, 'temperature of the teacher\'s softmax '
                      'in the weights and the class prior'),
        column_option('--ikl_gi', 'gi', int, '1: weights from the class prior (class-wise '
                      'global information), 0: from the teacher\'s softmax', choices=[0, 1]),
        Option('--ikl_warmup', type=non_negative_int, default=20,
               help='IKL, GKL: epochs over which the term grows linearly to full weight'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.o = config.options
        num_classes = self.probe(config.image_size)[0].logits.shape[1]
        self.prior = ClassPrior(num_classes, self.o.ikl_T2)

    def power(self):
        return 1.0

    def describe(self):
        o = self.o
        weights = 'class prior' if o.ikl_gi else 'teacher\'s softmax'
        return (f'alpha {o.ikl_alpha:g} (soft CE at T {o.ikl_T:g}), beta {o.ikl_beta:g} '
                f'(weights: {weights}, T2 {o.ikl_T2:g}{self.power_line()}), warm-up '
                f'{o.ikl_warmup} epochs')

    def power_line(self):
        return ''

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.prior.start_epoch(epoch)

    def kd_loss(self, s, t, batch):
        o = self.o
        if self.training:
            self.prior.update(t.logits, batch.target)
        return self.warmup_weight(o.ikl_warmup) * decoupled_kl(
            s.logits, t.logits, o.ikl_T, o.ikl_alpha, o.ikl_beta, self.power(),
            self.prior.class_prior(batch.target), o.ikl_gi, o.ikl_T2,
            by_weight_sum=self.by_weight_sum)


@register_method('gkl')
class GKL(IKL):
    about = About('GKL (Cui et al., TPAMI 2026)', 'logits, labels')
    options = IKL.options + (
        Option('--gkl_gamma', type=non_negative_float, default=None,
               pair_default=('dkl', 'gkl', 'gamma'),
               help='GKL: the power of the pair weights; default: the authors\' value for the '
                    'pair (1 elsewhere)'),)
    by_weight_sum = True

    def power(self):
        return self.o.gkl_gamma

    def power_line(self):
        return f', power {self.o.gkl_gamma:g}'
