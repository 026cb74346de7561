"""Connector modules that methods put between student and teacher features (RepDistiller names,
constructor arguments and state-dict keys)."""
import torch.nn as nn


class ConvReg(nn.Module):
    """Map a student feature map (NCHW shape ``s_shape``) onto a teacher's (``t_shape``): a
    stride-2 conv when the student is twice as large, a stride-2 transposed conv when it is half
    as large, else a valid conv that shrinks it to the teacher's size; then BN (and ReLU)."""

    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__()
        self.use_relu = use_relu
        _, s_C, s_H, s_W = s_shape
        _, t_C, t_H, t_W = t_shape
        if s_H == 2 * t_H:
            self.conv = nn.Conv2d(s_C, t_C, kernel_size=3, stride=2, padding=1)
        elif s_H * 2 == t_H:
            self.conv = nn.ConvTranspose2d(s_C, t_C, kernel_size=4, stride=2, padding=1)
        elif s_H >= t_H:
            self.conv = nn.Conv2d(s_C, t_C, kernel_size=(1 + s_H - t_H, 1 + s_W - t_W))
        else:
            raise ValueError(f'student feature {s_H}x{s_W} is smaller than the teacher\'s '
                             f'{t_H}x{t_W} by more than a factor of 2; no regressor fits')
        self.bn = nn.BatchNorm2d(t_C)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.use_relu else x


class Connector(nn.Module):
    """AB's per-stage connectors: identity where shapes agree, else a ConvReg without ReLU."""

    def __init__(self, s_shapes, t_shapes):
        super().__init__()
        self.connectors = nn.ModuleList(
            nn.Sequential() if s[1] == t[1] and s[2] == t[2] else ConvReg(s, t, use_relu=False)
            for s, t in zip(s_shapes, t_shapes))

    def forward(self, g_s):
        return [connector(f) for connector, f in zip(self.connectors, g_s)]


class Normalize(nn.Module):
    """L2-normalise along dim 1 (no epsilon, as RepDistiller)."""

    def __init__(self, power=2):
        super().__init__()
        self.power = power

    def forward(self, x):
        norm = x.pow(self.power).sum(1, keepdim=True).pow(1.0 / self.power)
        return x.div(norm)


class Embed(nn.Module):
    """Flatten, linear projection, L2 normalisation."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.l2norm = Normalize(2)

    def forward(self, x):
        return self.l2norm(self.linear(x.flatten(1)))


class LinearEmbed(nn.Module):
    """Flatten and linear projection."""

    def __init__(self, dim_in=1024, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return self.linear(x.flatten(1))


def _conv_stack(convs, use_bn, transpose=False):
    """conv, [BN], LeakyReLU(0.1) per (in, out) pair; an empty Sequential stands in for BN so
    that the indices (and state-dict keys) do not depend on ``use_bn``."""
    layers = []
    for c_in, c_out in convs:
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        layers += [conv(c_in, c_out, 3, 1, 1),
                   nn.BatchNorm2d(c_out) if use_bn else nn.Sequential(),
                   nn.LeakyReLU(0.1, inplace=True)]
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """FT's teacher-side auto-encoder; its code (the "factor") has ``int(C_t * k)`` channels."""

    def __init__(self, t_shape, k=0.5, use_bn=False):
        super().__init__()
        c, f = t_shape[1], int(t_shape[1] * k)
        self.encoder = _conv_stack([(c, c), (c, f), (f, f)], use_bn)
        self.decoder = _conv_stack([(f, f), (f, c), (c, c)], use_bn, transpose=True)

    def forward(self, f_t, is_factor=False):
        factor = self.encoder(f_t)
        return factor if is_factor else (factor, self.decoder(factor))


class Translator(nn.Module):
    """FT's student-side encoder into the teacher's factor space."""

    def __init__(self, s_shape, t_shape, k=0.5, use_bn=True):
        super().__init__()
        c, f = s_shape[1], int(t_shape[1] * k)
        self.encoder = _conv_stack([(c, c), (c, f), (f, f)], use_bn)

    def forward(self, f_s):
        return self.encoder(f_s)
