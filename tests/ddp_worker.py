"""Test helper run under torchrun: ``ddp_worker.py <script module> <args>`` runs the script's
main and then saves this rank's trained weights to ``$KD_TEST_DUMP/rank<r>.pt``."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import helper.loops as loops  # noqa: E402

_train = loops.Trainer._train


def train_and_dump(self, optimizer, resume):
    result = _train(self, optimizer, resume)
    model = getattr(self.learner, 'student', None) or self.learner.model
    torch.save(model.state_dict(), os.path.join(os.environ['KD_TEST_DUMP'],
                                                f'rank{self.rank}.pt'))
    return result


loops.Trainer._train = train_and_dump
module = __import__(sys.argv[1])
sys.exit(module.main(sys.argv[2:]))
