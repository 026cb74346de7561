"""A whole method in one file, as docs/adding_a_method.md shows it (a test imports and
trains it). The student's embedding, mapped to the teacher's width, learns the teacher's
batch similarities: each row of both cosine-similarity matrices softmaxed at ``--my_T``."""
import torch.nn as nn
import torch.nn.functional as F

from distiller_zoo import Distiller, Needs, register_method
from distiller_zoo.base import EMBEDDING, LOGITS, About
from distiller_zoo.options import Option
from core.util import positive_float


def my_loss(embedding_s, embedding_t, T):
    """KL from the teacher's to the student's row-wise similarity distributions."""
    z_s, z_t = F.normalize(embedding_s, dim=1), F.normalize(embedding_t, dim=1)
    log_p_s = F.log_softmax(z_s @ z_s.t() / T, dim=1)
    log_p_t = F.log_softmax(z_t @ z_t.t() / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction='batchmean', log_target=True)


@register_method('mykd')
class MyKD(Distiller):
    about = About('MyKD (the guide\'s example)', 'embeddings', 'a linear map to the teacher')
    needs = Needs(weights=(1.0, 0.0, 1.0), teacher_reads=frozenset({LOGITS, EMBEDDING}))
    options = (Option('--my_T', type=positive_float, default=0.5,
                      help='mykd: temperature of the similarity distributions'),)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)  # to size its modules
        self.embed = nn.Linear(feat_s[-1].shape[1], feat_t[-1].shape[1])  # trained with it

    def describe(self):
        return f'similarities at T {self.config.options.my_T:g}'

    def kd_loss(self, s, t, batch):  # the -b term; s, t: NetOutput(feats, logits, head_map)
        return my_loss(self.embed(s.feats[-1]), t.feats[-1], self.config.options.my_T)
