"""Where the attention looks: the attention modules of a finished stage applied to a few fixed images
(the first image of each class of the validation split, else of the training split), as small
payloads for reports, TensorBoard and the user's own plots.

The attention reads only the frozen source's maps, so the snapshot does not depend on which target
weights model selection keeps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.attention import attention_entropy
from afa_worker.stage_setup import PreparedStage

__all__ = ["attention_snapshot", "layer_attention", "SPATIAL", "CHANNEL"]

SPATIAL, CHANNEL = "spatial", "channel"
#: Which regulariser's weights are over positions and which over channels.
_KIND = {"afa_spatial": SPATIAL, "afa_channel": CHANNEL}


def layer_attention(run: PreparedStage) -> list[pb.LayerAttention]:
    """Entropy per aligned layer of the last training batch's attention."""
    return [pb.LayerAttention(layer=layer, entropy=entropy, max_entropy=max_entropy)
            for layer, (entropy, max_entropy) in
            ((layer, attention_entropy(w)) for layer, w in run.reg.last_attention.items())]


def _peak_over_uniform(weights: torch.Tensor) -> list[float]:
    return (torch.nan_to_num(weights.float(), nan=0.0).amax(dim=1) * weights.shape[1]).cpu().tolist()


def _to_uint8(maps: torch.Tensor) -> torch.Tensor:
    """Scales each image's map so its largest weight is 255."""
    maps = torch.nan_to_num(maps, nan=0.0)  # a diverged stage still answers
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak * 255).round().clamp(0, 255).to(torch.uint8)


def _spatial_layer(name: str, weights: torch.Tensor, shape: tuple[int, int, int], size: tuple[int, int]
                   ) -> pb.LayerAttentionSnapshot:
    _c, h, w = shape
    grid = weights.float().view(-1, 1, h, w)
    upsampled = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[:, 0]
    entropy, max_entropy = attention_entropy(weights)
    return pb.LayerAttentionSnapshot(
        layer=name, kind=SPATIAL, map_height=h, map_width=w, entropy=entropy, max_entropy=max_entropy,
        peak_over_uniform=_peak_over_uniform(weights),
        spatial=[bytes(m.contiguous().cpu().numpy().tobytes()) for m in _to_uint8(upsampled)])


def _channel_discrepancy(target: torch.Tensor | None, source: torch.Tensor) -> list[float]:
    """Per channel, the mean over images of ||F_t,j - F_s,j||^2 / (H W); empty without target maps."""
    if target is None:
        return []
    return (target.float() - source.float()).pow(2).flatten(2).mean(dim=2).mean(dim=0).cpu().tolist()


def _channel_layer(name: str, weights: torch.Tensor, target: torch.Tensor | None, source: torch.Tensor
                   ) -> pb.LayerAttentionSnapshot:
    entropy, max_entropy = attention_entropy(weights)
    return pb.LayerAttentionSnapshot(layer=name, kind=CHANNEL, entropy=entropy, max_entropy=max_entropy,
                                     peak_over_uniform=_peak_over_uniform(weights),
                                     channel=weights.float().mean(dim=0).cpu().tolist(),
                                     channel_discrepancy=_channel_discrepancy(target, source))


def _target_maps(run: PreparedStage, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The target's maps of ``inputs`` in eval mode (batch-norm statistics untouched)."""
    if run.target_tap is None:
        return {}
    model = run.session.target
    was_training = model.training
    model.eval()
    try:
        with run.session.precision.train_autocast():
            model(inputs)
    finally:
        model.train(was_training)
    return run.target_tap.take()


def _one_per_class(labels: list[int], count: int) -> list[int]:
    """The first image of each class in order of appearance, then the next ones: varied and fixed."""
    firsts: dict[int, int] = {}
    for i, label in enumerate(labels):
        firsts.setdefault(label, i)
    chosen = list(firsts.values())[:count]
    taken = set(chosen)
    return chosen + [i for i in range(len(labels)) if i not in taken][:count - len(chosen)]


@torch.no_grad()
def attention_snapshot(run: PreparedStage) -> pb.AttentionSnapshot | None:
    """The stage's attention on ``plan.attention_images`` fixed images (the first of each class of the
    validation split, else of the training split); None without attention."""
    count, kind = run.plan.attention_images, _KIND.get(run.reg.name)
    if not count or kind is None or run.source_tap is None:
        return None
    session = run.session
    split_name, split = ("val", session.data.val) if session.data.val is not None else ("train", session.data.train)
    chosen = torch.tensor(_one_per_class(split.y.tolist(), count), device=split.x.device)
    raw, labels = split.x[chosen], split.y[chosen]
    with session.precision.source_autocast():
        session.source(session.data.normalise(raw))
    source_maps = run.source_tap.take()
    target_maps = _target_maps(run, session.data.normalise(raw)) if kind == CHANNEL else {}
    size = (int(raw.shape[2]), int(raw.shape[3]))
    layers = []
    for name, maps in source_maps.items():
        weights = run.reg.attention_weights(name, maps.float())
        layers.append(_spatial_layer(name, weights, tuple(maps.shape[1:]), size) if kind == SPATIAL
                      else _channel_layer(name, weights, target_maps.get(name), maps))
    images = [pb.AttentionImage(pixels=bytes(x.permute(1, 2, 0).contiguous().cpu().numpy().tobytes()), label=int(y))
              for x, y in zip(raw, labels)]
    return pb.AttentionSnapshot(split=split_name, height=size[0], width=size[1], channels=int(raw.shape[1]),
                                images=images, layers=layers)
