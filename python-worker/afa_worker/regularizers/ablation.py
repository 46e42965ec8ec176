"""Channel ablation without re-running the network's prefix: the network split at the ablated layer.

DELTA's importance of channel j of a layer is the rise in the target CE when that layer's output
channel j is zeroed. Zeroing it leaves everything computed before the layer unchanged, so the
network is split there (a torch.fx trace: every value the rest of the graph reads from before the
cut, e.g. a residual block's identity branch, is an input of the suffix), the prefix runs once per
batch, and the suffix runs once per group of channels, each image repeated once per channel of the
group with that channel zeroed. In eval mode (the probe's: batch norm uses its running statistics)
every image is computed independently, so the grouped suffix equals one whole-network forward per
channel; ``tests/test_delta_probe.py`` checks it against the hook-based ablation. A model fx cannot
trace (data-dependent control flow) or a layer called more than once falls back to the whole
network per channel."""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

__all__ = ["SplitNetwork", "NotSplittable", "suffix_rises", "ABLATION_IMAGES"]

#: Images (batch x channels of a group) per suffix forward: bounds the suffix's activations and the time
#: between cancellation checks and progress events (at 224 px on a CPU a 64-image suffix is seconds).
ABLATION_IMAGES = 64


class NotSplittable(Exception):
    """The network cannot be split at this layer (why in the message)."""


class SplitNetwork:
    """``model`` as prefix (input -> the values the suffix needs, the layer's output first) and suffix."""

    def __init__(self, model: nn.Module, layer: str):
        try:
            traced = torch.fx.GraphModule(model, _LayerAsLeaf(layer).trace(model))
        except Exception as exc:  # noqa: BLE001 - any tracing failure means: ablate the whole network
            raise NotSplittable(f"torch.fx cannot trace the model ({type(exc).__name__}: {str(exc)[:200]})") from exc
        nodes = list(traced.graph.nodes)
        cuts = [i for i, n in enumerate(nodes) if n.op == "call_module" and n.target == layer]
        if len(cuts) != 1:
            raise NotSplittable(f"{layer!r} is called {len(cuts)} times in the traced forward, not once")
        cut = cuts[0]
        before = set(nodes[:cut + 1])
        crossing = [n for n in nodes[:cut + 1] if any(user not in before for user in n.users)]
        if nodes[cut] not in crossing:
            raise NotSplittable(f"nothing after {layer!r} reads its output")
        crossing.remove(nodes[cut])
        self.crossing = [nodes[cut], *crossing]
        self.prefix = torch.fx.GraphModule(traced, _prefix_graph(nodes[:cut + 1], self.crossing))
        self.suffix = torch.fx.GraphModule(traced, _suffix_graph(nodes[cut + 1:], self.crossing))

    @torch.no_grad()
    def split_values(self, x: torch.Tensor) -> list[torch.Tensor]:
        values = self.prefix(x)
        values = list(values) if isinstance(values, (tuple, list)) else [values]
        if not all(isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == len(x) for v in values):
            raise NotSplittable("a value crossing the cut is not a per-image tensor")
        return values


class _LayerAsLeaf(torch.fx.Tracer):
    """Traces into every module but the ablated layer, which stays one call even when it is a
    whole block (the small ResNet's and ResNet-18's aligned layers are blocks)."""

    def __init__(self, layer: str):
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name == self.layer or super().is_leaf_module(m, module_qualified_name)


def _prefix_graph(nodes: list[torch.fx.Node], outputs: list[torch.fx.Node]) -> torch.fx.Graph:
    graph, env = torch.fx.Graph(), {}
    for node in nodes:
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[n] for n in outputs))
    return graph


def _suffix_graph(nodes: list[torch.fx.Node], inputs: list[torch.fx.Node]) -> torch.fx.Graph:
    graph, env = torch.fx.Graph(), {}
    for i, node in enumerate(inputs):
        env[node] = graph.placeholder(f"crossing_{i}")
    for node in nodes:
        env[node] = graph.node_copy(node, lambda n: env[n])
    return graph


@torch.no_grad()
def suffix_rises(split: SplitNetwork, batches: list[tuple[torch.Tensor, torch.Tensor]], base: torch.Tensor,
                 on_channels, check, channels: int | None = None) -> torch.Tensor:
    """The rise in mean CE over ``batches`` for each output channel of the split layer zeroed (the
    first ``channels`` of them when given: the benchmark times a sample).

    ``on_channels(n)`` is told as each group of n channels finishes; ``check(j)`` may raise to cancel."""
    values = [split.split_values(x) for x, _y in batches]
    channels = min(int(values[0][0].shape[1]), channels or int(values[0][0].shape[1]))
    group = max(1, min(channels, ABLATION_IMAGES // max(1, len(batches[0][0]))))
    rises = torch.empty(channels, dtype=torch.float64)
    for start in range(0, channels, group):
        check(start)
        js = list(range(start, min(channels, start + group)))
        total = torch.zeros(len(js), dtype=torch.float64)
        for (x, y), crossing in zip(batches, values):
            b = len(x)
            layer_out = crossing[0].repeat(len(js), *[1] * (crossing[0].dim() - 1))
            for k, j in enumerate(js):
                layer_out[k * b:(k + 1) * b, j] = 0
            rest = [v.repeat(len(js), *[1] * (v.dim() - 1)) for v in crossing[1:]]
            logits = split.suffix(layer_out, *rest)
            ce = F.cross_entropy(logits, y.repeat(len(js)), reduction="none").view(len(js), b).mean(1)
            total += ce.double()
        rises[start:start + len(js)] = total / len(batches) - base.double()
        on_channels(len(js))
    return rises
