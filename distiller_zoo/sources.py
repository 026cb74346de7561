"""Where a method's teacher outputs come from: one object, given to the method when it is built.

``FrozenTeacher`` runs the frozen teacher on each batch (on the teacher's own view when the
batch carries one: CKD's coded images); ``TrainedPeer`` is a second network that learns beside
the student (DML). ``helper.teacher_cache.CachedTeacher`` reads stored outputs instead of
running the teacher. A source says whether it trains and what it can give (``serves``), and
the run checks a method's ``recipe`` against that before any work.
"""
import torch
import torch.nn as nn

from .base import BATCH_STATS, EMBEDDING, FEATURES, HEAD_MAP, LOGITS, PREACT, run_network

EVERYTHING = FEATURES | {PREACT, HEAD_MAP, BATCH_STATS}


class TeacherSource(nn.Module):
    """``source(batch, reads, image=None)`` gives the teacher's ``NetOutput`` for a batch (for
    ``image`` instead of the batch's own images, where a method passes its views).
    ``network`` is the teacher network itself (its classifier, its shapes)."""
    trains = False
    serves = EVERYTHING
    takes_views = True  # whether it can run on images a method makes of the batch

    def __init__(self, network):
        super().__init__()
        self.network = network

    def set_epoch(self, epoch):
        pass

    @staticmethod
    def input(batch, image):
        """What the network sees: ``image`` when given, else the batch's teacher view (CKD's
        coded images) when it has one, else the student's images."""
        if image is not None:
            return image
        return batch.teacher_image if batch.teacher_image is not None else batch.image


class FrozenTeacher(TeacherSource):
    """The frozen teacher, without gradients, in eval mode (or, for a method that reads
    ``BATCH_STATS``, on each batch's statistics); its weights and BatchNorm statistics never
    change."""

    def __init__(self, network):
        super().__init__(network.eval().requires_grad_(False))

    def forward(self, batch, reads, image=None):
        with torch.no_grad():
            return run_network(self.network, self.input(batch, image), reads)


class TeacherEnsemble(FrozenTeacher):
    """Several frozen teachers: their logits averaged with ``weights`` (summing to 1), and
    whatever else a method reads (features, maps, the classifier) from the first, whose network
    is ``network``."""

    def __init__(self, networks, weights):
        super().__init__(networks[0])
        self.others = nn.ModuleList(net.eval().requires_grad_(False) for net in networks[1:])
        self.weights = tuple(weights)

    def train(self, mode=True):
        super().train(mode)
        self.network.eval()  # frozen: their BatchNorm statistics never move
        self.others.eval()
        return self

    def mean_logits(self, first_logits, x, reads=frozenset()):
        """The weighted mean of the first teacher's logits and the others' on ``x``."""
        logits = self.weights[0] * first_logits
        for weight, net in zip(self.weights[1:], self.others):
            logits = logits + weight * run_network(net, x, reads & {BATCH_STATS}).logits
        return logits

    @torch.no_grad()
    def predict(self, x):
        """The teachers' prediction for images ``x``: their weighted mean logits."""
        return self.mean_logits(self.network(x), x)

    def forward(self, batch, reads, image=None):
        x = self.input(batch, image)
        with torch.no_grad():
            first = run_network(self.network, x, reads)
            return first._replace(logits=self.mean_logits(first.logits, x, reads))


class TrainedPeer(TeacherSource):
    """A second network trained with the student (its outputs keep their gradients)."""
    trains = True

    def forward(self, batch, reads, image=None):
        return run_network(self.network, self.input(batch, image), reads)


STORABLE = frozenset({LOGITS, EMBEDDING})  # what a store of teacher outputs can hold
