"""AST and ACT against independent reference formulas from the paper (Xie et al. 2021, section 3):
plain loops over images b, positions p and channels j, with the attention MLPs' own
(non-zero) weights, B > 1, HW > 1 and C != 2, so that each plausible mistake changes the value or
a gradient. The references never call the fused distance kernel or the attention modules.

Mutations of the implementation that each make at least one test here fail (each tried once):
1. the attention reading the target's maps instead of the source's (``_AttentiveTransfer.omega``);
2. ACT divided by HW;
3. ACT's factor C replaced by a constant (2);
4. AST pooling channels by sum instead of mean (``SpatialAttention.forward``);
5. an attention MLP without its ReLU;
6. the attention's gradient sign flipped (the attention maximising Omega): the gradient test and
   the one-SGD-step test;
7. attention lr x10: caught by test_stage.py's attention lr multiplier test.
8. the uniform floor mixed in the wrong way round (floor * softmax + (1 - floor) / C), or applied
   to the scores instead of the weights: the floor tests.
Also: the fused distance is first-order only, and says so when asked for a second order; the
DELTA weights are softmax(z / T) of the z-scored loss rises, checked with four channels."""

from __future__ import annotations

import math

import pytest
import torch

from afa_worker.regularizers.afa import AttentiveChannelTransfer, AttentiveSpatialTransfer
from afa_worker.regularizers.delta import importance_from_rises
from afa_worker.regularizers.distance import weighted_sq_distance

B, C, H, W = 3, 5, 3, 3
HW = H * W
LAYER = "layer"


def _maps(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    source = torch.randn(B, C, H, W, generator=gen)
    target = (source + 0.5 * torch.randn(B, C, H, W, generator=gen)).requires_grad_(True)
    return target, source


def _module(cls, seed: int):
    torch.manual_seed(seed)
    module = cls(1.0, {LAYER: (C, H, W)}, hidden=4)  # float32: the module reads maps as float32
    with torch.no_grad():  # non-zero everywhere, biases included, so no term vanishes by accident
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module


def _mlp(x: torch.Tensor, first: torch.Tensor, second: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Linear(no bias) -> ReLU -> Linear, written out: x (K,) -> (M,)."""
    hidden = [max(0.0, sum(first[i, k] * x[k] for k in range(x.shape[0]))) for i in range(first.shape[0])]
    out = [sum(second[m, i] * hidden[i] for i in range(len(hidden))) for m in range(second.shape[0])]
    return torch.stack([o + (bias[m] if bias is not None else 0) for m, o in enumerate(out)])


def _softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max())
    return e / e.sum()


def reference_ast(target, source, first, second, bias) -> torch.Tensor:
    """0.5/B * sum_b sum_p (HW * A_bp)^2 * sum_c (F_t[b,c,p] - F_s[b,c,p])^2,
    A_b = softmax(MLP_s(mean_c F_s[b]))."""
    total = 0
    for b in range(B):
        pooled = torch.stack([sum(source[b, c].flatten()[p] for c in range(C)) / C for p in range(HW)])
        attention = _softmax(_mlp(pooled, first, second, bias))
        for p in range(HW):
            distance = sum((target[b, c].flatten()[p] - source[b, c].flatten()[p]) ** 2 for c in range(C))
            total = total + (HW * attention[p]) ** 2 * distance
    return 0.5 * total / B


def reference_act(target, source, first, second, channel_bias, floor: float = 0.0) -> torch.Tensor:
    """0.5/B * sum_b sum_j C * a_bj * sum_p (F_t[b,j,p] - F_s[b,j,p])^2,
    a_b = softmax_j(MLP_c(F_s[b,j] flattened) + bias_j), with a uniform floor f: f/C + (1-f) a_b."""
    total = 0
    for b in range(B):
        scores = torch.stack([_mlp(source[b, j].flatten(), first, second, None)[0] + channel_bias[j] for j in range(C)])
        attention = [floor / C + (1 - floor) * a for a in _softmax(scores)]
        for j in range(C):
            distance = sum((target[b, j].flatten()[p] - source[b, j].flatten()[p]) ** 2 for p in range(HW))
            total = total + C * attention[j] * distance
    return 0.5 * total / B


def _ast_params(module):
    mlp = module.attention[LAYER].mlp
    return mlp[0].weight, mlp[2].weight, mlp[2].bias


def _act_params(module):
    attention = module.attention[LAYER]
    return attention.mlp[0].weight, attention.mlp[2].weight, attention.channel_bias


CASES = {"ast": (AttentiveSpatialTransfer, reference_ast, _ast_params),
         "act": (AttentiveChannelTransfer, reference_act, _act_params)}


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_omega_equals_the_reference_formula(kind, seed):
    cls, reference, params = CASES[kind]
    module = _module(cls, seed)
    target, source = _maps(seed)
    got = module({LAYER: target}, {LAYER: source})
    want = reference(target, source, *params(module))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.parametrize("kind", list(CASES))
def test_gradients_equal_the_reference_formula_for_target_and_attention(kind):
    cls, reference, params = CASES[kind]
    module = _module(cls, 3)
    target, source = _maps(3)
    weights = list(params(module))
    got = torch.autograd.grad(module({LAYER: target}, {LAYER: source}), [target, *weights])
    want = torch.autograd.grad(reference(target, source, *weights), [target, *weights])
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5), (g - w).abs().max()


@pytest.mark.parametrize("kind", list(CASES))
def test_one_sgd_step_of_the_attention_alone_lowers_omega(kind):
    cls, _reference, _params = CASES[kind]
    module = _module(cls, 4)
    target, source = _maps(4)
    target = target.detach()
    before = module({LAYER: target}, {LAYER: source})
    before.backward()
    with torch.no_grad():
        for p in module.parameters():
            p -= 1e-3 * p.grad
    assert float(module({LAYER: target}, {LAYER: source})) < float(before)


@pytest.mark.parametrize("floor", [0.3, 0.8])
def test_act_with_a_uniform_floor_equals_the_reference_formula_in_value_and_gradient(floor):
    module = _module(AttentiveChannelTransfer, 6)
    for attention in module.attention.values():
        attention.uniform_floor = floor
    target, source = _maps(6)
    weights = list(_act_params(module))
    got = module({LAYER: target}, {LAYER: source})
    want = reference_act(target, source, *weights, floor=floor)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    for g, w in zip(torch.autograd.grad(got, [target, *weights]), torch.autograd.grad(want, [target, *weights])):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5), (g - w).abs().max()
    # no channel's weight falls below floor / C, whatever the attention's parameters
    assert float(module.attention[LAYER](source).min()) >= floor / C - 1e-7


def test_act_with_floor_one_is_plain_feature_map_alignment():
    """Uniform weights 1/C times the factor C: 0.5/B * sum of squared differences over everything."""
    module = _module(AttentiveChannelTransfer, 7)
    module.attention[LAYER].uniform_floor = 1.0
    target, source = _maps(7)
    want = 0.5 / B * sum(float(d) ** 2 for d in (target - source).detach().flatten())
    assert float(module({LAYER: target}, {LAYER: source})) == pytest.approx(want, rel=1e-5)


def test_the_fused_distance_refuses_a_second_order_gradient():
    target, source = _maps(5)
    weights = torch.rand(B, C, requires_grad=True)
    value = weighted_sq_distance(target, source, weights, over="channel")
    (grad,) = torch.autograd.grad(value, target, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad|trying to differentiate"):
        torch.autograd.grad(grad.sum(), weights)


def test_delta_weights_are_softmax_of_z_scored_rises_over_the_temperature():
    rises = torch.tensor([0.5, 0.1, 0.9, 0.3])
    mean = sum(rises.tolist()) / 4
    std = math.sqrt(sum((r - mean) ** 2 for r in rises.tolist()) / 3)  # the sample std, as torch.std
    z = [(r - mean) / std for r in rises.tolist()]
    exps = [math.exp(v / 5.0) for v in z]
    want = [e / sum(exps) for e in exps]
    got = importance_from_rises(rises, temperature=5.0)
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    assert int(got.argmax()) == 2 and int(got.argmin()) == 1  # the largest rise weighs most
