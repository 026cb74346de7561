"""What the training loop knows of what it trains (``helper.loops``), so that every trained
thing (a method, plain supervised training, a linear probe) speaks to it the same way."""
from typing import NamedTuple, Optional

import torch.nn as nn


class InitStage(NamedTuple):
    """A two-stage method's first stage: ``modules`` trained alone on the method's init loss
    for ``epochs`` epochs, at ``learning_rate`` (None: the run's)."""
    modules: nn.Module
    epochs: int
    learning_rate: Optional[float] = None


class Learner(nn.Module):
    """``forward_train(batch) -> (logits, {name: weighted loss})`` on a ``dataset.batch.Batch``
    and ``forward_test(image) -> logits``; ``checkpoint_state()`` and
    ``load_checkpoint_state(state)``. The rest has defaults: no init stage, nothing per epoch,
    no other network to evaluate, nothing else to log, any batch size."""
    full_batch = None  # the batch size its modules are sized by: the loop skips shorter ones
    task_terms = ('cls',)  # the loss terms of the task (a strategy may step the others apart)

    def forward(self, batch):  # what DistributedDataParallel calls
        return self.forward_train(batch)

    def init_stage(self):
        return None

    def forward_init(self, batch):
        raise NotImplementedError

    def set_epoch(self, epoch):
        pass

    def epoch_metrics(self):
        """Values the loop logs with each epoch (a learned temperature, say), by name."""
        return {}

    def extra_predictors(self):
        """Other networks the loop also evaluates each epoch, by name (DML's peer)."""
        return {}
