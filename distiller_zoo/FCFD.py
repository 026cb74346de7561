"""FCFD (Liu et al., "Function-Consistent Feature Distillation", ICLR 2023;
LiuDongyang6/FCFD): both networks run stage by stage (the models' stage contract), and learned
bridges carry a stage's output from one network into the other's space. Besides the student's
and the teacher's own paths, a few mixed paths are drawn each step (some stages of one network,
the rest of the other), so that student features must also work in the teacher's later stages
and the other way round. The student's bridged features and the mixed paths that are in the
teacher's space at a stage are regressed onto the teacher's own output there (MSE; at the last
stage also after ReLU and pooling), and the mixed paths' logits are matched to the teacher's by
a KL, beside the student's KD term and its cross-entropy. The teacher runs on batch
statistics, as in the authors' code; the student's running statistics are left to its own
path."""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.util import non_negative_float, non_negative_int
from models.base import evaluating
from .base import (About, BATCH_STATS, LOGITS, STAGES, Distiller, Needs, batch_statistics,
                   register_method)
from .options import Option

TEACHER, STUDENT = 0, 1
# The mixed paths a step draws from (0: a teacher stage, 1: a student stage), by the number of
# stages, for each --fcfd_type: both directions, student-to-teacher only, teacher-to-student
# only, or none.
CANDIDATES = {
    'bi': {4: [(0, 0, 1, 1), (0, 0, 0, 1), (1, 1, 0, 0), (1, 1, 1, 0)],
           5: [(0, 0, 1, 1, 1), (0, 0, 0, 1, 1), (0, 0, 0, 0, 1), (1, 1, 0, 0, 0),
               (1, 1, 1, 0, 0), (1, 1, 1, 1, 0)]},
    's2t': {4: [(1, 1, 0, 0), (1, 1, 1, 0)],
            5: [(1, 1, 0, 0, 0), (1, 1, 1, 0, 0), (1, 1, 1, 1, 0)]},
    't2s': {4: [(0, 0, 1, 1), (0, 0, 0, 1)],
            5: [(0, 0, 1, 1, 1), (0, 0, 0, 1, 1), (0, 0, 0, 0, 1)]},
    'nomix': {4: [], 5: []}}
L2_WARMUP = 20  # epochs over which the feature terms grow linearly, as the authors'


def build_bridge(channels_in, channels_out, size_in, size_out, after_relu):
    """A bridge from one network's stage output to the other's: a 3x3 conv (stride 2 for a map
    twice as large, a 4x4 transposed conv for one half as large, each then with a bias) and BN,
    then a LeakyReLU(0.1) where the target hands on maps after their ReLU."""
    if size_in == size_out:
        conv = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
    elif size_in == 2 * size_out:
        conv = nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1)
    elif 2 * size_in == size_out:
        conv = nn.ConvTranspose2d(channels_in, channels_out, 4, stride=2, padding=1)
    else:
        raise ValueError(f'no bridge between maps of {size_in}x{size_in} and '
                         f'{size_out}x{size_out}')
    if isinstance(conv, nn.Conv2d):  # the authors' init reaches convs, not transposed ones
        nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')
    layers = [conv, nn.BatchNorm2d(channels_out)]
    return nn.Sequential(*layers, *([nn.LeakyReLU(0.1)] if after_relu else []))


def stage_shapes(net, image_size):
    """(channels, side) of each stage's output of ``net`` for one image."""
    shapes, x = [], torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad(), evaluating(net):
        for stage in range(net.num_stages):
            x = net.stage_forward(stage, x)
            shapes.append((x.shape[1], x.shape[2]))
    return shapes


@register_method('fcfd')
class FCFD(Distiller):
    about = About('FCFD (Liu et al., ICLR 2023)',
                  'both networks stage by stage (the stage contract)',
                  "bridges between the networks' stages, both ways")
    # CE 1 + the student's KL at --kd_T (-a 1) + the feature and mixed-path terms (-b 1); T,
    # the feature weight, the mixed paths' KL weight and Nesterov momentum per pair
    needs = Needs(weights=(1.0, 1.0, 1.0),
                    teacher_reads=frozenset({LOGITS, STAGES, BATCH_STATS}),
                    pair_table=('fcfd', 'fcfd'))
    logit_kl_weights = ('alpha', 'beta')
    options = (
        Option('--fcfd_paths', type=non_negative_int, default=2,
               help='FCFD: mixed paths drawn each step'),
        Option('--fcfd_type', choices=list(CANDIDATES), default='bi',
               help='FCFD: which mixed paths: both directions, student to teacher, teacher to '
                    'student, or none'),
        Option('--fcfd_weight_l2', type=non_negative_float, default=None,
               help='FCFD: weight of the feature terms (default: the authors\' for the pair, '
                    'else 5)'),
        Option('--fcfd_mix_weight', type=non_negative_float, default=None,
               help='FCFD: weight of the mixed paths\' KL (default: the authors\' for the pair, '
                    'else 1)'))

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        nets = (self.teacher_net, self.student)
        for net, arch in zip(nets, (config.model_t, config.model_s)):
            if net.stage_input is None:
                raise ValueError(f'FCFD runs both networks stage by stage, and {arch} is not '
                                 f'split into stages')
        n = self.student.num_stages
        if self.teacher_net.num_stages != n:
            raise ValueError(f'FCFD mixes stages of networks with as many stages: '
                             f'{config.model_t} has {self.teacher_net.num_stages}, '
                             f'{config.model_s} {n}')
        o = config.options
        self.candidates = CANDIDATES[o.fcfd_type][n]
        if o.fcfd_paths > len(self.candidates):
            raise ValueError(f'--fcfd_paths {o.fcfd_paths}: --fcfd_type {o.fcfd_type} has '
                             f'{len(self.candidates)} mixed paths for {n} stages')
        self.extra_paths = o.fcfd_paths
        self.weight_l2 = 5.0 if o.fcfd_weight_l2 is None else o.fcfd_weight_l2
        self.mix_weight = 1.0 if o.fcfd_mix_weight is None else o.fcfd_mix_weight
        shapes = [stage_shapes(net, config.image_size) for net in nets]
        # bridges[stage][target][source], as the authors' state dicts (stage 0 has none)
        self.bridges = nn.ModuleList([nn.ModuleList([
            nn.ModuleList([nn.Module(), nn.Module()]) for _ in nets]) for _ in range(n)])
        for stage in range(1, n):
            for target in (TEACHER, STUDENT):
                source = 1 - target
                (c_in, h_in), (c_out, h_out) = shapes[source][stage], shapes[target][stage]
                try:
                    self.bridges[stage][target][source] = build_bridge(
                        c_in, c_out, h_in, h_out, nets[target].stage_input == 'afterrelu')
                except ValueError as e:
                    raise ValueError(f'stage {stage}: {e}') from None
        # No path continues after the last stage, so the bridge from the teacher's last stage
        # into the student's is never used (the authors build it too): kept out of training.
        self.frozen.append(self.bridges[n - 1][STUDENT][TEACHER])

    def describe(self):
        bridges = sum(p.numel() for p in self.bridges.parameters())
        return (f'{self.extra_paths} mixed paths a step of {len(self.candidates)}, feature '
                f'weight {self.weight_l2:g}, mixed KL weight {self.mix_weight:g}, '
                f'{self.kl.describe()}; bridges {bridges:,} parameters; the teacher on batch '
                f'statistics')

    def draw_paths(self):
        """The teacher's and the student's own paths and the step's mixed paths (drawn from
        the CPU generator, so a resumed run draws the same)."""
        order = torch.randperm(len(self.candidates))[:self.extra_paths].tolist()
        n = self.student.num_stages
        return [(TEACHER,) * n, (STUDENT,) * n] + [self.candidates[i] for i in order]

    def run_paths(self, teacher_image, student_image, paths):
        """Every path's logits and, per stage, each network's outputs by path prefix: a
        network's own output is bridged into the other's space (the student's always, the
        teacher's where a mixed path continues in the student). Mixed passes leave the
        networks' running statistics as they are."""
        nets = (self.teacher_net, self.student)
        n = len(paths[0])
        inters = [({}, {}) for _ in range(n)]
        for stage in range(n):
            for path in paths:
                net, name = path[stage], path[:stage + 1]
                if name in inters[stage][net]:
                    continue
                if stage == 0:
                    x = (teacher_image, student_image)[net]
                else:
                    x = inters[stage - 1][net][path[:stage]]
                pure = len(set(name)) == 1
                with contextlib.nullcontext() if pure else batch_statistics(nets[net]):
                    out = nets[net].stage_forward(stage, x)
                inters[stage][net][name] = out
                other = 1 - net
                if pure and stage and (other == TEACHER or any(
                        p[:stage + 1] == name and stage + 1 < n and p[stage + 1] == other
                        for p in paths[2:])):
                    inters[stage][other][name] = self.bridges[stage][other][net](out)
        logits = [nets[p[-1]].forward_classifier(inters[n - 1][p[-1]][p]) for p in paths]
        return logits, inters

    def feature_loss(self, inters):
        """The MSE of every output in the teacher's space at stages 1.. to the teacher's own
        (at the last stage also after ReLU and global pooling)."""
        total = 0.0
        n = len(inters)
        for stage in range(1, n):
            outputs = inters[stage][TEACHER]
            target = outputs[(TEACHER,) * (stage + 1)].detach()
            others = [v for k, v in outputs.items() if k != (TEACHER,) * (stage + 1)]
            total = total + sum(F.mse_loss(v, target) for v in others)
            if stage == n - 1:
                pooled = F.adaptive_avg_pool2d(F.relu(target), 1).flatten(1)
                total = total + sum(
                    F.mse_loss(F.adaptive_avg_pool2d(F.relu(v), 1).flatten(1), pooled)
                    for v in others)
        return total

    def forward_train(self, batch):
        paths = self.draw_paths()
        with batch_statistics(self.teacher_net):
            logits, inters = self.run_paths(self.teacher.input(batch, None), batch.image, paths)
        logit_t, logit_s = logits[TEACHER].detach(), logits[STUDENT]
        mixed = sum((self.kl(y, logit_t) for y in logits[2:]),
                    torch.zeros((), device=logit_s.device))
        return logit_s, self.add_method_loss(
            self.base_losses(logit_s, logit_t, batch.cls_target),
            {'l2': self.warmup_weight(L2_WARMUP) * self.weight_l2 * self.feature_loss(inters),
             'mix': self.mix_weight * mixed})
