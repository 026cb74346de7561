"""Deep Mutual Learning (Zhang et al., CVPR 2018), as the SRD seed runs it: two networks learn
together, each from the labels and from the other's softened predictions (the other's output
detached). The second network (a ``TrainedPeer`` in the teacher's place: ``--path_t`` to start
from a checkpoint, or ``--model_t`` to start from scratch) is trained, evaluated every epoch and
checkpointed beside the student (under ``'peer'``).

Both networks sit in one SGD: each parameter keeps its own momentum buffer, and each loss
reaches only its own network, so this is the same update as two optimizers with the same
schedule stepping on the same batch (except under --max_grad_norm, which clips them jointly).
"""
from core.util import positive_float
from .base import About, LOGITS, Distiller, Needs, register_method
from .options import Option


@register_method('dml')
class DML(Distiller):
    about = About('DML (Zhang et al., CVPR 2018)', 'logits', 'the peer network itself')
    # student: -r x CE + -a x KL(peer || student); peer: -r x CE + -b x KL(student || peer)
    a_term_is_kd = False  # its -a term is its own
    needs = Needs(weights=(1.0, 1.0, 1.0), teacher_reads=frozenset({LOGITS}),
                    teacher_trains=True)
    logit_kl_weights = ('alpha', 'beta')
    task_terms = ('cls', 'peer_cls')
    options = (Option('--dml_T', type=positive_float, default=1.0,
                      help='DML: temperature of both mimicry terms (-a: the student\'s, -b: the '
                           'peer\'s); --path_t is optional with --distill dml (--model_t then '
                           'names the peer, trained from scratch)'),)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.kl = self.logit_kl(config.options.dml_T)

    def describe(self):
        return (f'student and peer trained together, {self.kl.describe()}; the peer is '
                f'evaluated and checkpointed too')

    def losses(self, s, t, batch):
        target = batch.target
        return s.logits, {
            'cls': self.gamma * self.criterion_cls(s.logits, target),
            'div': self.alpha * self.kl(s.logits, t.logits.detach()),
            'peer_cls': self.gamma * self.criterion_cls(t.logits, target),
            'peer_div': self.beta * self.kl(t.logits, s.logits.detach())}

    def extra_predictors(self):
        return {'peer': self.teacher_net}

    def checkpoint_state(self):
        return {**super().checkpoint_state(), 'peer': self.teacher_net.state_dict()}

    def load_checkpoint_state(self, state):
        super().load_checkpoint_state(state)
        self.teacher_net.load_state_dict(state['peer'])

