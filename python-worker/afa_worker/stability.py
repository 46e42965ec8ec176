"""How strong a regulariser may be before plain SGD on alpha * Omega diverges.

Omega is an unnormalised sum over every feature element, so its curvature in the backbone weights
is large, and gradient descent with momentum mu on a quadratic of curvature c is stable only for
lr * c < 2 (1 + mu). With c = alpha * lambda_max (the top eigenvalue of Omega's Hessian) that is

    alpha < alpha_max = 2 (1 + mu) / (lr * lambda_max)

lambda_max is estimated at the start of a stage by power iteration on Hessian-vector products of
Omega (double backward through the plain, twice-differentiable distance) on one fixed batch, with
the target's batch-norm statistics restored afterwards. For Adam no limit is computed: its step is
not lr x gradient, and its stability depends on the preconditioned Hessian.

The cost is bounded twice: at most MAX_PRODUCTS products, and a time budget of BUDGET_SHARE of
the stage's estimated training time (its iterations x a step's time, the step estimated from the
first gradient on the probe batch scaled to the stage's batch), so on a 20-step ResNet-50 stage it
does not take longer than the stage. At least MIN_PRODUCTS products run whatever the budget: fewer
under-estimate lambda (power iteration climbs towards it), which would over-state alpha_max. Three
products put lambda within some tens of per cent, which matters little where it is used: the
default relative alpha is 0.01x the limit, two orders of magnitude below it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.backbones import head_module
from afa_worker.cancel import check_cancelled, interruptible
from afa_worker.phases import phase
from afa_worker.regularizers.distance import twice_differentiable
from afa_worker.stage_setup import PreparedStage

__all__ = ["Stability", "estimate_stability", "stability_limit", "MAX_PRODUCTS", "MIN_PRODUCTS", "PROBE_BATCH", "BUDGET_SHARE"]

#: Hessian-vector products at most; the iteration stops earlier once lambda moves by < 1% (a limit, not a digit).
MAX_PRODUCTS = 20
TOLERANCE = 1e-2
#: Images in the fixed batch the curvature is measured on.
PROBE_BATCH = 8
#: The estimate's time budget as a share of the stage's estimated training time, and its floor. A
#: budget that binds makes the estimate (and a relative alpha) depend on the machine's speed, so the
#: floor is far above what a small network needs (0.3-0.4 s for the small ResNet's 5-7 products):
#: there the estimate stops by convergence, the same on every machine, loaded or not.
BUDGET_SHARE = 0.05
MIN_BUDGET_SECONDS = 10.0
MIN_PRODUCTS = 3


@dataclass(frozen=True)
class Stability:
    lambda_max: float
    #: NaN for Adam (no limit computed).
    alpha_max: float
    products: int
    seconds: float
    converged: bool = True
    budget_seconds: float = 0.0

    def message(self, alpha: float) -> pb.StabilityEstimate:
        ratio = alpha / self.alpha_max if math.isfinite(self.alpha_max) and self.alpha_max > 0 else math.nan
        return pb.StabilityEstimate(lambda_max=self.lambda_max, alpha_max=self.alpha_max, alpha=alpha, alpha_ratio=ratio,
                                    products=self.products, seconds=self.seconds, converged=self.converged,
                                    budget_seconds=self.budget_seconds)


@dataclass
class _Budget:
    """When the power iteration stops: the stage's share of time, measured from the first gradient."""

    iterations: int
    batch_size: int
    started: float = 0.0
    seconds: float = math.inf

    def start(self) -> None:
        self.started = time.perf_counter()

    def first_gradient_took(self, seconds: float) -> None:
        step = seconds * max(1.0, self.batch_size / PROBE_BATCH)
        self.seconds = max(MIN_BUDGET_SECONDS, BUDGET_SHARE * self.iterations * step)

    def spent(self, products: int) -> bool:
        return products >= MIN_PRODUCTS and time.perf_counter() - self.started >= self.seconds


def stability_limit(lambda_max: float, optimizer) -> float:
    """alpha_max for SGD with momentum at the stage's base lr (the schedule's peak); NaN for Adam."""
    if optimizer.kind != "sgd":
        return math.nan
    if lambda_max <= 0:
        return math.inf
    return 2 * (1 + optimizer.momentum) / (optimizer.lr * lambda_max)


def _backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in head_module(model).parameters()}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in head]


def _bn_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(b, b.detach().clone()) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in m.buffers()]


def _omega(run: PreparedStage, idx: torch.Tensor) -> torch.Tensor:
    session = run.session
    x = session.data.normalise(session.data.train.x[idx])
    source_maps = {}
    if run.source_tap is not None:
        with torch.no_grad():
            session.source(x)
        source_maps = {k: v.float() for k, v in run.source_tap.take().items()}
    session.target(x)
    target_maps = run.target_tap.take() if run.target_tap is not None else {}
    return run.reg(target_maps, source_maps)


def _power_iteration(omega_of, params: list[nn.Parameter], generator: torch.Generator, budget: _Budget,
                     tracker) -> tuple[float, int, bool]:
    """(lambda, products, converged); ``omega_of()`` builds Omega's graph on the probe batch."""
    budget.start()
    # Weights after the last aligned layer do not reach Omega: their rows of the Hessian are zero.
    first = torch.autograd.grad(omega_of(), params, create_graph=True, allow_unused=True)
    budget.first_gradient_took(time.perf_counter() - budget.started)
    used = [(p, g) for p, g in zip(params, first) if g is not None and g.requires_grad]
    if not used:
        return 0.0, 0, True
    params, grads = [p for p, _ in used], [g for _, g in used]
    v = [torch.randn(p.shape, generator=generator).to(p.device) for p in params]
    norm = torch.sqrt(sum((t * t).sum() for t in v))
    v = [t / norm for t in v]
    estimate, products, converged = 0.0, 0, False
    for products in range(1, MAX_PRODUCTS + 1):
        check_cancelled("estimating the stability limit")
        hv = [h if h is not None else torch.zeros_like(p) for h, p in
              zip(torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True, allow_unused=True), params)]
        tracker.advance()
        previous, estimate = estimate, float(sum((a * b).sum() for a, b in zip(v, hv)))
        norm = torch.sqrt(sum((t * t).sum() for t in hv))
        if not torch.isfinite(norm) or norm == 0:
            converged = True  # an exact zero (or no curvature at all): nothing left to iterate
            break
        v = [t / norm for t in hv]
        if products > 1 and abs(estimate - previous) <= TOLERANCE * abs(estimate):
            converged = True
            break
        if budget.spent(products):
            break
    return max(estimate, 0.0), products, converged


def estimate_stability(run: PreparedStage) -> Stability | None:
    """lambda_max of Omega in the trainable backbone weights and the limit it sets; None when the
    stage has no term to scale (no regulariser, L2-FE)."""
    reg, plan = run.reg, run.plan
    if not reg.has_term or reg.freezes_backbone:
        return None
    started = time.perf_counter()
    if reg.exact_lambda_max is not None:
        return Stability(reg.exact_lambda_max, stability_limit(reg.exact_lambda_max, plan.optimizer), 0, 0.0)
    model = run.session.target
    params = _backbone_parameters(model)
    generator = torch.Generator().manual_seed(plan.seed + 2)
    idx = torch.randperm(len(run.session.data.train), generator=generator)[:PROBE_BATCH].to(run.session.data.train.x.device)
    saved = _bn_buffers(model)
    budget = _Budget(plan.iterations, plan.batch_size)
    try:
        with (phase("stability_estimate", MAX_PRODUCTS, "products") as tracker, twice_differentiable(), torch.enable_grad(),
              interruptible("estimating the stability limit", model, run.session.source)):
            lambda_max, products, converged = _power_iteration(lambda: _omega(run, idx), params, generator, budget, tracker)
            tracker.total = products
            tracker.detail = (f"lambda_max {lambda_max:.3g}, " + ("converged" if converged else
                              f"not converged to {TOLERANCE:.0%}: stopped by the {'time budget' if products < MAX_PRODUCTS else 'products'}")
                              + f"; budget {budget.seconds:.1f} s")
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        for p in params:
            p.grad = None
    return Stability(lambda_max, stability_limit(lambda_max, plan.optimizer), products, time.perf_counter() - started,
                     converged, budget.seconds)
