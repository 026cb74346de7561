"""KD-SVD (Lee et al., ECCV 2018), as shipped by RepDistiller: compress each stage's feature map
to its leading right-singular vector(s) and match, between consecutive stages, Gaussian-kernel
correlations of those vectors. Needs equal channel counts stage by stage."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import About, Distiller, Needs, register_method


def _leading_singular_vectors(f, n):
    """Leading ``n`` right-singular vectors (B, C, n), unit columns, and singular values
    (B, n), unit norm, of the (H*W) x C matrix of each sample's feature map."""
    x = f.flatten(2).transpose(1, 2)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    v = torch.nan_to_num(vh.transpose(1, 2), nan=0.0, posinf=0.0, neginf=0.0)
    s = torch.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
    return F.normalize(v[:, :, :n], dim=1), F.normalize(s[:, :n], dim=1)


def _align(v_s, v_t):
    """Pick, per sample, the student vector most (anti-)parallel to the teacher's, sign-fixed."""
    cos = torch.bmm(v_s.transpose(1, 2), v_t)  # (B, n_s, 1)
    best = (cos.abs() == cos.abs().max(dim=1, keepdim=True).values).float()
    return torch.bmm(v_s, best * torch.sign(cos))


def _correlation(v, prev):
    return torch.exp(-(v - prev.transpose(1, 2)).pow(2) / 8)


class KDSVD(nn.Module):
    def __init__(self, k=1):
        super().__init__()
        self.k = k

    def forward(self, g_s, g_t):
        losses, prev_s, prev_t = [], None, None
        for f_s, f_t in zip(g_s, g_t):
            v_s, _ = _leading_singular_vectors(f_s, self.k + 3)
            v_t, s_t = _leading_singular_vectors(f_t, self.k)
            v_s = _align(v_s, v_t)
            v_s, v_t = v_s * s_t.unsqueeze(1), v_t * s_t.unsqueeze(1)
            if prev_s is not None:
                diff = (_correlation(v_s, prev_s) - _correlation(v_t, prev_t).detach()).pow(2)
                diff = torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff))
                loss = diff.sum() / f_s.shape[0]
                # The zeroing above (RepDistiller's) covers degenerate SVDs of finite maps; maps
                # that are already non-finite make the loss NaN, for the non-finite guard.
                finite = torch.isfinite(f_s).all() & torch.isfinite(f_t).all()
                losses.append(torch.where(finite, loss, torch.full_like(loss, float('nan'))))
            prev_s, prev_t = v_s, v_t
        return losses


@register_method('kdsvd')
class KDSVDMethod(Distiller):
    about = About('KD-SVD', 'every stage')
    needs = Needs(weights=(1.0, 0.0, 1.0))  # RepDistiller publishes no weight for KD-SVD

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        feat_s, feat_t = self.probe_features(config.image_size)
        c_s = [f.shape[1] for f in feat_s[1:-1]]
        c_t = [f.shape[1] for f in feat_t[1:-1]]
        if c_s != c_t:
            raise ValueError(f'KD-SVD needs equal channel counts at every stage; student {c_s}, '
                             f'teacher {c_t}')
        self.criterion_kd = KDSVD()

    def kd_loss(self, s, t, batch):
        return sum(self.criterion_kd(s.feats[1:-1], t.feats[1:-1]))
