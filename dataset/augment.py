"""The augmentation every loader shares, on whole batches of uint8 images ``(B, C, H, W)`` on any
device: RepDistiller's random crop (zero padding 4) and horizontal flip, drawn here or taken from
a stored round (CKD, the teacher-output cache), and the normalisation fused into the conversion
to float."""
import torch
import torch.nn.functional as F

PAD = 4


def random_crops(count, draws, device, flip=True):
    """``(rows, cols, flips)`` of ``count`` crops distributed as torchvision's
    ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip()``: the offsets are drawn first,
    then the flips (none without ``flip``)."""
    offsets = torch.randint(0, 2 * PAD + 1, (count, 2), generator=draws).to(device)
    flips = (random_flips(count, draws, device) if flip
             else torch.zeros(count, dtype=torch.bool, device=device))
    return offsets[:, 0], offsets[:, 1], flips


def random_flips(count, draws, device):
    return (torch.rand(count, generator=draws) < 0.5).to(device)


def crop_and_flip(images, rows, cols, flips):
    """Zero-pad by ``PAD``, take each image's window at ``(row, col)`` and flip it where asked;
    one gather for the whole batch."""
    b, _, h, w = images.shape
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    r = (rows[:, None] + torch.arange(h, device=images.device))[:, :, None]
    c = (cols[:, None] + torch.arange(w, device=images.device))[:, None, :]
    c = torch.where(flips[:, None, None], c.flip(2), c)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, r, c].permute(0, 3, 1, 2)


class Normalizer:
    """0-255 pixels (uint8 or float) -> ``(x / 255 - mean) / std``, in one pass."""

    def __init__(self, mean, std, device='cpu'):
        std, mean = torch.tensor(std), torch.tensor(mean)
        self.scale = (1 / (255 * std)).view(3, 1, 1).to(device)
        self.shift = (-mean / std).view(3, 1, 1).to(device)

    def __call__(self, images):
        return images.float().mul_(self.scale).add_(self.shift)
