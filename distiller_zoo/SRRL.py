"""SRRL (Yang et al., "Knowledge Distillation via Softmax Regression Representation
Learning", ICLR 2021), as the SimKD toolbox runs it: a connector maps the student's pooled
embedding onto the teacher's; the loss matches the embeddings and, through the frozen teacher
classifier, the teacher's logits. The student's own head predicts."""
import torch.nn as nn

from .base import About, EMBEDDING, LOGITS, Distiller, Needs, register_method


class SRRL(nn.Module):
    """The connector (the SimKD toolbox's name and state-dict keys, ``transfer.*``): a bias-free
    1x1 conv, BN and ReLU on the embedding seen as a 1x1 map, ``s_n`` to ``t_n`` channels."""

    def __init__(self, *, s_n, t_n):
        super().__init__()
        self.transfer = nn.Sequential(nn.Conv2d(s_n, t_n, kernel_size=1, bias=False),
                                      nn.BatchNorm2d(t_n), nn.ReLU(inplace=True))

    def forward(self, feat_s, cls_t):
        """``(connected embedding, its logits through cls_t)``."""
        connected = self.transfer(feat_s[:, :, None, None]).flatten(1)
        return connected, cls_t(connected)


@register_method('srrl')
class SRRLMethod(Distiller):
    about = About('SRRL (Yang et al., ICLR 2021)',
                  'embeddings, logits; teacher classifier',
                  'connector')
    # the SimKD toolbox's -c 1 -d 1 -b 1
    needs = Needs(weights=(1.0, 1.0, 1.0), teacher_reads=frozenset({LOGITS, EMBEDDING}))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        self.connector = SRRL(s_n=feat_s[-1].shape[1], t_n=feat_t[-1].shape[1])
        self.criterion_kd = nn.MSELoss()

    def kd_loss(self, s, t, batch):
        connected, logits = self.connector(s.feats[-1], self.teacher_net.get_classifier())
        return self.criterion_kd(connected, t.feats[-1]) + self.criterion_kd(logits, t.logits)
