"""LumiNet (Hossain et al., "LumiNet: Perception-Driven Knowledge Distillation via Statistical
Logit Calibration", TMLR 2025; ismail31416/LumiNet): each class's logits are standardised over
the batch (the "perception" of a sample relative to the others) before a KL at temperature T,
weighted by alpha squared (no T^2). The cross-entropy weight is the authors' per pair."""
import torch
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int, positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .options import Option
from .pairs import has_pair, pair_settings, settings_by_pair

# {(teacher, student): (alpha, T, cross-entropy weight)} of the authors' CIFAR-100 configs
LUMINET_SETTINGS = settings_by_pair('luminet', 'luminet', ('alpha', 'T', 'ce'))
DEFAULTS = pair_settings('luminet', 'luminet', None, None)


def perception(logits, epsilon=1e-5):
    """Each column standardised over the batch (biased variance): it depends on the batch."""
    mean = logits.mean(0, keepdim=True)
    variance = logits.var(0, unbiased=False, keepdim=True)
    return (logits - mean) / torch.sqrt(variance + epsilon)


def luminet_loss(logits_student, logits_teacher, target, alpha, temperature):
    """``alpha^2`` x batch-mean KL of the standardised logits at ``temperature`` (the authors'
    name and order; ``target`` unused), in fp32."""
    with torch.autocast(logits_student.device.type, enabled=False):
        log_q_s = F.log_softmax(perception(logits_student.float()) / temperature, 1)
        p_t = F.softmax(perception(logits_teacher.float()) / temperature, 1)
        return F.kl_div(log_q_s, p_t, reduction='batchmean') * alpha ** 2


@register_method('luminet')
class LumiNet(Distiller):
    about = About('LumiNet (Hossain et al., TMLR 2025)', 'logits')
    # CE_WEIGHT x CE (the pair's, else 2) + b x warm-up x luminet_loss
    needs = Needs(weights=(DEFAULTS['ce'], 0.0, 1.0), teacher_reads=frozenset({LOGITS}),
                  pair_table=('luminet', 'luminet'))
    options = (
        Option('--luminet_alpha', type=non_negative_float, default=None,
               pair_default=('luminet', 'luminet', 'alpha'),
               help=f'LumiNet: alpha (the loss is alpha^2 x KL); default: the authors\' value '
                    f'for the pair ({DEFAULTS["alpha"]:g} elsewhere)'),
        Option('--luminet_T', type=positive_float, default=None,
               pair_default=('luminet', 'luminet', 'T'),
               help=f'LumiNet: temperature; default: the authors\' for the pair '
                    f'({DEFAULTS["T"]:g} elsewhere)'),
        Option('--luminet_warmup', type=non_negative_int, default=20,
               help='LumiNet: epochs over which the term grows linearly to full weight'))

    @classmethod
    def run_defaults(cls, teacher, student):
        """The cross-entropy weight (-r) of the authors' config for the pair."""
        if not has_pair('luminet', 'luminet', teacher, student):
            return {}
        return {'gamma': pair_settings('luminet', 'luminet', teacher, student)['ce']}

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        o = config.options
        self.luminet_alpha, self.luminet_T, self.warmup = (o.luminet_alpha, o.luminet_T,
                                                           o.luminet_warmup)

    def describe(self):
        return (f'alpha {self.luminet_alpha:g} (squared), T {self.luminet_T:g}, warm-up '
                f'{self.warmup} epochs')

    def kd_loss(self, s, t, batch):
        return self.warmup_weight(self.warmup) * luminet_loss(
            s.logits, t.logits, batch.target, self.luminet_alpha, self.luminet_T)
