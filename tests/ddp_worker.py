"""Test helper run under torchrun: ``ddp_worker.py <script module> <args>`` runs the script's
main and then saves this rank's trained weights to ``$KD_TEST_DUMP/rank<r>.pt`` (and a method's
own state, memory banks and queues included, to ``rank<r>_method.pt``)."""
import os
import sys

import torch

import helper.loops as loops

_train = loops.Trainer._train


def train_and_dump(self, optimizer, resume):
    result = _train(self, optimizer, resume)
    model = getattr(self.learner, 'student', None) or self.learner.model
    dump = os.environ['KD_TEST_DUMP']
    torch.save(model.state_dict(), os.path.join(dump, f'rank{self.rank}.pt'))
    method_state = self.learner.checkpoint_state().get('method_state', {})
    torch.save(method_state, os.path.join(dump, f'rank{self.rank}_method.pt'))
    return result


loops.Trainer._train = train_and_dump
module = __import__(sys.argv[1])
sys.exit(module.main(sys.argv[2:]))
