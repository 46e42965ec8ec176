"""The one hot loop of every feature regulariser, fused: sum over images and channels (or
positions) of weight * ||F_t - F_s||^2, with a hand-written backward.

Autograd over the plain expression keeps several full-size temporaries (the difference, its
square, the broadcast weights, their products) and walks each again backwards; on CPU those
elementwise passes cost more than the attention MLPs. Here the forward computes the difference
once and reduces its square along the memory layout (channels-first or channels-last), never
copying the maps into another layout; the backward is one scaled multiply."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch.autograd.function import once_differentiable

__all__ = ["weighted_sq_distance", "twice_differentiable"]

_PLAIN: ContextVar[bool] = ContextVar("afa_plain_distance", default=False)


@contextlib.contextmanager
def twice_differentiable() -> Iterator[None]:
    """Within it the distance is the plain autograd expression, whose Hessian-vector products are
    right (the stability estimate's power iteration needs them); slower, so only there."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def _plain(target: torch.Tensor, source: torch.Tensor, weights: torch.Tensor, over_channels: bool) -> torch.Tensor:
    diff = target.float() - source.float()
    squared = diff.pow(2).flatten(2).sum(2) if over_channels else diff.pow(2).sum(1).flatten(1)
    return (weights.float() * squared).sum()


class _WeightedSqDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, target: torch.Tensor, source: torch.Tensor, weights: torch.Tensor, over_channels: bool):
        # At least float32 (bf16 maps under autocast are summed in float32), float64 kept as is.
        dtype = torch.promote_types(target.dtype, torch.float32)
        diff = target.to(dtype) - source.to(dtype)
        flat, channel_dim = _per_image_view(diff)
        # per (image, channel) sums over positions, or per (image, position) sums over channels
        reduced = 3 - channel_dim if over_channels else channel_dim
        if reduced == 2:  # the innermost dim in memory: a batched dot product
            squared = torch.linalg.vecdot(flat, flat, dim=2)
        else:  # vecdot over a strided dim is ~5x slower than this
            squared = (flat * flat).sum(dim=1)
        ctx.save_for_backward(diff, weights, squared)
        ctx.over_channels = over_channels
        ctx.target_dtype = target.dtype
        return (weights.to(dtype) * squared).sum()

    @staticmethod
    @once_differentiable  # the backward is hand-written and first-order: a Hessian through it would be wrong
    def backward(ctx, grad: torch.Tensor):
        diff, weights, squared = ctx.saved_tensors
        b, c = diff.shape[:2]
        grad_target = grad_weights = None
        if ctx.needs_input_grad[0]:
            scale = (2 * grad) * weights.to(diff.dtype)
            shape = (b, c, *([1] * (diff.dim() - 2))) if ctx.over_channels else (b, 1, *diff.shape[2:])
            grad_target = (diff * scale.reshape(shape)).to(ctx.target_dtype)
        if ctx.needs_input_grad[2]:
            grad_weights = (grad * squared).to(weights.dtype)
        return grad_target, None, grad_weights, None


def _per_image_view(diff: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A (B, K, L) view of the maps without copying, and which of dims 1, 2 holds the channels.
    Channels-last maps (the worker's layout for conv backbones) are (B, HW, C) in memory."""
    b, c = diff.shape[:2]
    if diff.dim() == 4 and not diff.is_contiguous() and diff.is_contiguous(memory_format=torch.channels_last):
        return diff.permute(0, 2, 3, 1).reshape(b, -1, c), 2
    return diff.reshape(b, c, -1), 1


def weighted_sq_distance(target: torch.Tensor, source: torch.Tensor, weights: torch.Tensor, over: str) -> torch.Tensor:
    """sum_b sum_k weights[b, k] * ||target[b, k] - source[b, k]||^2 where k runs over channels
    (``over="channel"``, weights (B, C) or (C,)) or over positions (``over="position"``, weights
    (B, HW)). The source gets no gradient; the target and the weights do."""
    b, c = target.shape[:2]
    over_channels = over == "channel"
    if over_channels and weights.dim() == 1:
        weights = weights.expand(b, c)
    if _PLAIN.get():
        return _plain(target, source.detach(), weights, over_channels)
    return _WeightedSqDistance.apply(target, source.detach(), weights, over_channels)
