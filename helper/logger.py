"""Console and TensorBoard logging of a run."""
from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    def __init__(self, tb_dir):
        self.writer = SummaryWriter(log_dir=tb_dir)

    def log_epoch(self, epoch, epochs, lr, train, test, seconds):
        for name, value in train.items():
            self.writer.add_scalar(f'train/{name}', value, epoch)
        for name, value in test.items():
            self.writer.add_scalar(f'test/{name}', value, epoch)
        self.writer.add_scalar('lr', lr, epoch)
        self.writer.flush()
        terms = ' '.join(f'{k[5:]} {v:.4f}' for k, v in train.items() if k.startswith('loss_'))
        print(f'epoch {epoch:>3}/{epochs} | lr {lr:.4g} | train loss {train["loss"]:.4f} '
              f'({terms}) acc {train["top1"]:.2f} | test loss {test["loss"]:.4f} '
              f'acc@1 {test["top1"]:.2f} acc@5 {test["top5"]:.2f} | {seconds:.1f}s', flush=True)

    def close(self):
        self.writer.close()
