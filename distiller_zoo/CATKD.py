"""CAT-KD (Guo et al., "Class Attention Transfer Based Knowledge Distillation", CVPR 2023;
GzyAftermath/CAT-KD): each network's class activation maps, its classifier's weights applied
as a 1x1 convolution (no bias) to the map the classifier pools, are average-pooled to r x r,
optionally L2-normalised per class map, and the student's regress the teacher's (MSE). As the
authors' converted networks, the student's classifier has no bias (its logits are the spatial
mean of its maps) unless ``--catkd_bias``."""
import torch
import torch.nn.functional as F

from core.util import positive_int
from .base import About, FEATURES, HEAD_MAP, LOGITS, Distiller, Needs, register_method
from .options import Option
from .pairs import has_pair


def class_activation_maps(head_map, classifier):
    """(B, K, H, W): the classifier's weights (K, C) applied at every position of the map."""
    return torch.einsum('kc,bchw->bkhw', classifier.weight, head_map)


def binarize(cam):
    """The authors' binarised teacher maps: 1 where a map exceeds its mean absolute value."""
    threshold = cam.abs().mean((2, 3), keepdim=True)
    return (cam > threshold).to(cam.dtype)


def CAT_loss(CAM_Student, CAM_Teacher, CAM_RESOLUTION, IF_NORMALIZE, IF_BINARIZE=False):
    """The authors' loss and arguments: both maps pooled to ``CAM_RESOLUTION`` squared,
    L2-normalised per (sample, class) map with ``IF_NORMALIZE``, then the MSE; with
    ``IF_BINARIZE`` the teacher's maps are binarised first (their forward did it)."""
    if IF_BINARIZE:
        CAM_Teacher = binarize(CAM_Teacher)
    size = (CAM_RESOLUTION, CAM_RESOLUTION)
    student = F.adaptive_avg_pool2d(CAM_Student, size)
    teacher = F.adaptive_avg_pool2d(CAM_Teacher, size)
    if IF_NORMALIZE:
        student, teacher = F.normalize(student, dim=(2, 3)), F.normalize(teacher, dim=(2, 3))
    return F.mse_loss(student, teacher)


@register_method('catkd')
class CATKD(Distiller):
    about = About('CAT-KD (Guo et al., CVPR 2023)', 'head maps and classifier weights of both')
    # CE 1 + beta x CAT; beta, r and the normalisation per pair (per_pair/catkd.toml)
    needs = Needs(weights=(1.0, 0.0, 400.0), student_reads=FEATURES | {HEAD_MAP},
                    teacher_reads=frozenset({LOGITS, HEAD_MAP}), pair_table=('catkd', 'catkd'))
    options = (
        Option('--catkd_resolution', type=positive_int, default=None,
               help='CAT-KD: the side r of the pooled class activation maps (default: the '
                    'authors\' for the pair, else 2)'),
        Option('--catkd_normalize', type=int, choices=[0, 1], default=None,
               help='CAT-KD: 1 to L2-normalise each pooled map (default: the authors\' for the '
                    'pair, else 1)'),
        Option('--catkd_binarize', action='store_true',
               help='CAT-KD: binarise the teacher\'s maps (1 above their mean absolute value)'),
        Option('--catkd_bias', action='store_true',
               help='CAT-KD: keep the student classifier\'s bias (the authors\' student has '
                    'none: by default it is held at 0)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        o = config.options
        self.resolution, self.normalize = o.catkd_resolution or 2, bool(o.catkd_normalize)
        self.binarize, self.bias = o.catkd_binarize, o.catkd_bias
        self.tuned = has_pair('catkd', 'catkd', config.model_t, config.model_s)
        self.probe(config.image_size)  # refuses a network without the map
        if not self.bias:
            bias = self.student.get_classifier().bias
            if bias is not None:
                with torch.no_grad():
                    bias.zero_()
                bias.requires_grad_(False)

    def describe(self):
        return (f'class activation maps pooled to {self.resolution}x{self.resolution}, '
                f'{"normalised" if self.normalize else "not normalised"}'
                + (', teacher maps binarised' if self.binarize else '')
                + ('' if self.bias else '; the student\'s classifier without bias')
                + ('' if self.tuned else '; the authors did not run this pair: their defaults '
                   'apply (tune -b so that the CAT term is about 1-50 after the first epoch, '
                   'as their README asks)'))

    def kd_loss(self, s, t, batch):
        cam_s = class_activation_maps(s.head_map, self.student.get_classifier())
        with torch.no_grad():
            cam_t = class_activation_maps(t.head_map, self.teacher_net.get_classifier())
        return CAT_loss(cam_s.float(), cam_t.float(), self.resolution, self.normalize,
                        self.binarize)
