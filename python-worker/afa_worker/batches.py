"""Training batches: shuffled index streams, the training set in order, and augmentation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from afa_worker.data import DataBundle

__all__ = ["shuffled_indices", "ordered_batches", "augment", "random_crop_flip"]


def shuffled_indices(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of successive random permutations of ``range(n)``, wrapping across epochs."""
    buffer = torch.empty(0, dtype=torch.long)
    while True:
        while len(buffer) < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=gen)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def ordered_batches(data: DataBundle, batch_size: int, limit: int | None = None) -> Iterator[torch.Tensor]:
    """The training images in order, normalised, at most ``limit`` batches."""
    train = data.train
    for i, start in enumerate(range(0, len(train), batch_size)):
        if limit is not None and i >= limit:
            return
        yield data.normalise(train.x[start:start + batch_size])


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image, on tensors: a crop of
    the input's own size from the zero-padded images."""
    _b, _c, h, w = x.shape
    return random_crop_flip(F.pad(x, (pad, pad, pad, pad)), (h, w), gen)


def random_crop_flip(x: torch.Tensor, crop: int | tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """Per image, a random crop window (crop x crop, or height x width) of the images (N, C, H, W),
    flipped horizontally at random (torchvision's RandomCrop + RandomHorizontalFlip), on the
    images' device. Draws the rows' offsets, the columns', then the flips from ``gen``."""
    b, _c, h, w = x.shape
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    oy = torch.randint(0, h - ch + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, w - cw + 1, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(ch, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(cw, device=x.device))[:, None, :]
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = x[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # (B, ch, cw, C)
    return out.permute(0, 3, 1, 2)  # (B, C, ch, cw) in channels-last memory, the model's layout
