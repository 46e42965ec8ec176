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
    """Random crop with zero padding and random horizontal flip, per image, on tensors."""
    b, _c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)  # (B, C, H, W) in channels-last memory, the model's layout


def random_crop_flip(x: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """Per image, a random crop x crop window of the uint8 images (N, C, S, S), flipped horizontally
    at random (torchvision's RandomCrop + RandomHorizontalFlip), on the images' device."""
    b, _c, h, w = x.shape
    oy = torch.randint(0, h - crop + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, w - crop + 1, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(crop, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(crop, device=x.device))[:, None, :]
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = x[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # (B, crop, crop, C)
    return out.permute(0, 3, 1, 2)  # (B, C, crop, crop) in channels-last memory, the model's layout
