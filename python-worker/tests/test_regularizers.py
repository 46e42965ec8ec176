"""Each regulariser against its formula (DESIGN.md section 2) on tiny hand-built tensors, and where
its gradient flows: into the target and the attention modules, never into the source."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from afa_worker.regularizers.afa import AttentiveChannelTransfer, AttentiveSpatialTransfer
from afa_worker.regularizers.delta import DELTA, channel_importance
from afa_worker.regularizers.feature_map import FeatureMapAlignment
from afa_worker.regularizers.l2sp import L2SP


def _pair(target_values, source_values, shape):
    ft = torch.tensor(target_values, dtype=torch.float32).view(shape).requires_grad_(True)
    fs = torch.tensor(source_values, dtype=torch.float32).view(shape).requires_grad_(True)
    return ft, fs


def _set_probabilities(module: nn.Module, logits_param: torch.Tensor, probabilities: list[float]) -> None:
    """Zero every weight so the attention equals softmax(logits_param) = the given probabilities."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        logits_param.copy_(torch.tensor(probabilities).log())


def test_feature_map_value():
    # B=2, C=1, H=1, W=2: diff 1 everywhere -> ||.||^2 = 4 -> 0.5/2 * 4 = 1
    ft, fs = _pair([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], (2, 1, 1, 2))
    assert FeatureMapAlignment().omega({"l": ft}, {"l": fs}).item() == pytest.approx(1.0)


def test_feature_map_sums_layers_and_detaches_source():
    ft1, fs1 = _pair([3.0], [1.0], (1, 1, 1, 1))  # 4
    ft2, fs2 = _pair([0.0, 1.0], [1.0, 1.0], (1, 2, 1, 1))  # 1
    omega = FeatureMapAlignment().omega({"a": ft1, "b": ft2}, {"a": fs1, "b": fs2})
    assert omega.item() == pytest.approx(0.5 * (4 + 1))
    omega.backward()
    assert ft1.grad is not None and ft1.grad.item() == pytest.approx(2.0)  # d/dft 0.5 (ft-fs)^2 = ft-fs
    assert fs1.grad is None and fs2.grad is None


def test_l2sp_value_and_gradient_skips_head():
    class Tiny(nn.Module):
        head_name = "fc"

        def __init__(self):
            super().__init__()
            self.body = nn.Linear(2, 1, bias=True)  # 3 parameters
            self.fc = nn.Linear(1, 2)

    source, target = Tiny(), Tiny()
    target.load_state_dict(source.state_dict())
    with torch.no_grad():
        for p in target.body.parameters():
            p.add_(1.0)
        target.fc.weight.add_(5.0)  # the head never counts
    reg = L2SP(alpha=1.0, target=target, source=source, head_name="fc")
    omega = reg.omega({}, {})
    assert omega.item() == pytest.approx(0.5 * 3)
    omega.backward()
    assert torch.allclose(target.body.weight.grad, torch.ones_like(target.body.weight))
    assert target.fc.weight.grad is None
    assert all(p.grad is None for p in source.parameters())


def test_delta_value():
    # C=2, H=W=1, B=1: diffs (1, 2) -> squared (1, 4); a = (0.25, 0.75)
    ft, fs = _pair([1.0, 2.0], [0.0, 0.0], (1, 2, 1, 1))
    reg = DELTA(alpha=1.0, weights={"l": torch.tensor([0.25, 0.75])})
    expected = 0.5 * (2 * 0.25 * 1 + 2 * 0.75 * 4)
    assert reg.omega({"l": ft}, {"l": fs}).item() == pytest.approx(expected)


def test_delta_divides_by_positions_and_batch():
    # B=2, C=1, H=1, W=2, all diffs 1: sum = 4, / HW (2) / B (2) * C (1) * a (1) * 0.5 = 0.5
    ft, fs = _pair([1.0] * 4, [0.0] * 4, (2, 1, 1, 2))
    reg = DELTA(alpha=1.0, weights={"l": torch.tensor([1.0])})
    assert reg.omega({"l": ft}, {"l": fs}).item() == pytest.approx(0.5)


def test_afa_spatial_value_with_known_attention():
    # B=1, C=2, H=1, W=2. Position 0 diffs (1, 0) -> 1; position 1 diffs (2, 0) -> 4. A = (0.25, 0.75).
    ft, fs = _pair([1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], (1, 2, 1, 2))
    reg = AttentiveSpatialTransfer(alpha=1.0, layer_shapes={"l": (2, 1, 2)})
    att = reg.attention["l"]
    _set_probabilities(att, att.mlp[2].bias, [0.25, 0.75])
    expected = 0.5 * ((2 * 0.25) ** 2 * 1 + (2 * 0.75) ** 2 * 4)
    assert reg.omega({"l": ft}, {"l": fs}).item() == pytest.approx(expected)


def test_afa_spatial_uniform_attention_equals_feature_map():
    torch.manual_seed(0)
    ft = torch.randn(3, 4, 5, 5)
    fs = torch.randn(3, 4, 5, 5)
    reg = AttentiveSpatialTransfer(alpha=1.0, layer_shapes={"l": (4, 5, 5)})
    att = reg.attention["l"]
    _set_probabilities(att, att.mlp[2].bias, [1 / 25] * 25)
    fm = FeatureMapAlignment().omega({"l": ft}, {"l": fs})
    assert reg.omega({"l": ft}, {"l": fs}).item() == pytest.approx(fm.item(), rel=1e-5)


def test_afa_channel_value_with_known_attention():
    ft, fs = _pair([1.0, 2.0], [0.0, 0.0], (1, 2, 1, 1))
    reg = AttentiveChannelTransfer(alpha=1.0, layer_shapes={"l": (2, 1, 1)})
    att = reg.attention["l"]
    _set_probabilities(att, att.channel_bias, [0.25, 0.75])
    expected = 0.5 * (2 * 0.25 * 1 + 2 * 0.75 * 4)
    assert reg.omega({"l": ft}, {"l": fs}).item() == pytest.approx(expected)


def test_afa_channel_attention_is_per_image():
    # Two images with different source maps get different channel attention when the MLP is non-zero.
    torch.manual_seed(0)
    reg = AttentiveChannelTransfer(alpha=1.0, layer_shapes={"l": (3, 2, 2)})
    fs = torch.randn(2, 3, 2, 2)
    weights = reg.attention["l"](fs)
    assert weights.shape == (2, 3)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))
    assert not torch.allclose(weights[0], weights[1])


@pytest.mark.parametrize("cls", [AttentiveSpatialTransfer, AttentiveChannelTransfer])
def test_afa_gradient_reaches_target_and_attention_not_source(cls):
    torch.manual_seed(0)
    ft = torch.randn(2, 3, 4, 4, requires_grad=True)
    fs = torch.randn(2, 3, 4, 4, requires_grad=True)
    reg = cls(alpha=1.0, layer_shapes={"l": (3, 4, 4)})
    reg.omega({"l": ft}, {"l": fs}).backward()
    assert ft.grad is not None and ft.grad.abs().sum() > 0
    assert fs.grad is None
    grads = [p.grad for p in reg.parameters()]
    assert grads and all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_delta_channel_importance_prefers_the_channel_the_classifier_uses():
    """Channel 0 carries the label, channel 1 is constant zero: ablating channel 0 raises the loss,
    ablating channel 1 does not, so a_0 > a_1; the weights are a softmax over channels."""

    class Probe(nn.Module):
        head_name = "fc"

        def __init__(self):
            super().__init__()
            self.feat = nn.Conv2d(1, 2, 1, bias=False)
            self.fc = nn.Linear(2, 2)
            with torch.no_grad():
                self.feat.weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))

        def forward(self, x):
            return self.fc(self.feat(x).mean(dim=(2, 3)))

    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            x = torch.randn(64, 1, 2, 2, generator=gen)
            yield x, (x.mean(dim=(1, 2, 3)) > 0).long()

    weights = channel_importance(Probe(), "fc", ["feat"], batches(), head_iterations=200,
                                 ablation_batches=2, temperature=5.0, lr=0.1)
    a = weights["feat"]
    assert a.shape == (2,)
    assert a.sum().item() == pytest.approx(1.0)
    assert a[0] > a[1]
    # For two channels the z-scores (unbiased std) are +-1/sqrt(2) whatever the rises: a = softmax(z/5).
    z = torch.tensor([1.0, -1.0]) / math.sqrt(2)
    assert torch.allclose(a, torch.softmax(z / 5, dim=0), atol=1e-4)


@pytest.mark.parametrize("over", ["channel", "position"])
def test_fused_distance_matches_autograd_value_and_gradients(over):
    from afa_worker.regularizers.distance import weighted_sq_distance

    torch.manual_seed(0)
    ft = torch.randn(3, 4, 2, 5, dtype=torch.float64, requires_grad=True)
    fs = torch.randn(3, 4, 2, 5, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, 4 if over == "channel" else 10, dtype=torch.float64, requires_grad=True)
    squared = (ft - fs.detach()).pow(2)
    reference = (w * (squared.flatten(2).sum(2) if over == "channel" else squared.sum(1).flatten(1))).sum()
    fused = weighted_sq_distance(ft, fs, w, over=over)
    assert fused.item() == pytest.approx(reference.item())
    g_ref = torch.autograd.grad(reference, (ft, w))
    g_fused = torch.autograd.grad(fused, (ft, w))
    for a, b in zip(g_fused, g_ref):
        assert torch.allclose(a, b)
    fused2 = weighted_sq_distance(ft, fs, w, over=over)
    fused2.backward()
    assert fs.grad is None
    assert torch.autograd.gradcheck(lambda t, ww: weighted_sq_distance(t, fs, ww, over=over), (ft, w))


@pytest.mark.parametrize("over", ["channel", "position"])
def test_fused_distance_on_channels_last_maps_equals_channels_first_and_keeps_the_layout(over):
    """The worker's maps are channels-last; the distance reads them in place, gives the same value
    and gradients, and hands back a gradient in the same layout (no copy into another layout)."""
    from afa_worker.regularizers.distance import weighted_sq_distance

    torch.manual_seed(0)
    ft = torch.randn(3, 4, 2, 5, dtype=torch.float64)
    fs = torch.randn(3, 4, 2, 5, dtype=torch.float64)
    w = torch.rand(3, 4 if over == "channel" else 10, dtype=torch.float64, requires_grad=True)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        t = ft.contiguous(memory_format=layout).requires_grad_()
        value = weighted_sq_distance(t, fs.contiguous(memory_format=layout), w, over=over)
        grad_t, grad_w = torch.autograd.grad(value, (t, w))
        assert grad_t.is_contiguous(memory_format=layout)
        results.append((value, grad_t, grad_w))
    (v1, gt1, gw1), (v2, gt2, gw2) = results
    assert torch.allclose(v1, v2) and torch.allclose(gt1, gt2) and torch.allclose(gw1, gw2)
