"""Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018): match the conditional
probability distributions that cosine similarities induce over the batch."""
import torch
import torch.nn as nn

from .base import About, EMBEDDING, LOGITS, Distiller, Needs, register_method


class PKT(nn.Module):
    def forward(self, f_s, f_t):
        return self.cosine_similarity_loss(f_s, f_t)

    @staticmethod
    def cosine_similarity_loss(output_net, target_net, eps=1e-7):
        def conditional_probabilities(x):
            # RepDistiller zeroes NaNs here; finite features never produce one, and a diverged
            # run's NaN must reach the non-finite guard, so it is left in.
            x = x / (x.norm(dim=1, keepdim=True) + eps)
            similarity = (x @ x.t() + 1.0) / 2.0
            return similarity / similarity.sum(dim=1, keepdim=True)

        p_s = conditional_probabilities(output_net.flatten(1))
        p_t = conditional_probabilities(target_net.flatten(1))
        return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@register_method('pkt')
class PKTMethod(Distiller):
    about = About('PKT', 'embeddings')
    needs = Needs(weights=(1.0, 0.0, 30000.0), teacher_reads=frozenset({LOGITS, EMBEDDING}))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.criterion_kd = PKT()

    def kd_loss(self, s, t, batch):
        return self.criterion_kd(s.feats[-1], t.feats[-1])
