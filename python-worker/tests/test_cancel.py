"""Long work that is not a training step stops when cancelled: DELTA's probe, data loading; and
CloseSession on a running stage cancels it instead of waiting for it to finish."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest
import torch
from torch import nn

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.cancel import Cancelled, cancellable, check_cancelled, interruptible


class _Seen(logging.Handler):
    """Sets an event when the worker logs a line containing ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.event, self.lines = text, threading.Event(), []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if self.text in line:
            self.event.set()


@pytest.fixture
def seen():
    handlers = []

    def watch(text: str) -> _Seen:
        handler = _Seen(text)
        logging.getLogger("afa_worker").addHandler(handler)
        handlers.append(handler)
        return handler

    logging.getLogger("afa_worker").setLevel(logging.INFO)
    yield watch
    for handler in handlers:
        logging.getLogger("afa_worker").removeHandler(handler)


def test_check_cancelled_raises_only_inside_a_cancelled_block():
    event = threading.Event()
    check_cancelled("outside")  # no current work: nothing to cancel
    with cancellable(event):
        check_cancelled("not yet")
        event.set()
        with pytest.raises(Cancelled, match="cancelled while probing"):
            check_cancelled("probing")
    check_cancelled("after the block")


class _Trip(torch.autograd.Function):
    """Identity whose backward is itself again (so differentiable twice) and whose double backward
    calls ``on_double``: a cancel that arrives while a Hessian-vector product runs, at a known node."""

    @staticmethod
    def forward(ctx, x, on_double, depth=0):
        ctx.on_double, ctx.depth = on_double, depth
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        if ctx.depth == 0:
            return _Trip.apply(grad, ctx.on_double, 1), None, None
        ctx.on_double()
        return grad, None, None


class _Chain(nn.Module):
    """Six tanh layers; ``after(i)`` is called as layer i finishes its forward, ``ran`` counts the layers run."""

    def __init__(self, on_double=lambda: None):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(nn.Linear(5, 5).double() for _ in range(6))
        self.on_double, self.ran, self.after = on_double, 0, lambda i: None

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = torch.tanh(layer(x))
            self.ran += 1
            self.after(i)
            if i == 3:
                x = _Trip.apply(x, self.on_double)
        return x


def _hvp(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    params = list(net.parameters())
    grads = torch.autograd.grad(net(x).pow(2).sum(), params, create_graph=True)
    return list(torch.autograd.grad(grads, params, grad_outputs=[torch.ones_like(p) for p in params]))


def test_a_cancel_stops_a_forward_between_two_layers():
    # the mistake it catches: checks only between passes (a ResNet-50 forward at 224 px is seconds on a CPU)
    event, net = threading.Event(), _Chain()
    net.after = lambda i: event.set() if i == 1 else None  # the cancel arrives while layer 1 runs
    with cancellable(event), interruptible("probing", net), pytest.raises(Cancelled, match="cancelled while probing"):
        net(torch.ones(2, 5, dtype=torch.double))
    assert net.ran == 2  # layers 2..5 never ran


def test_a_cancel_stops_a_backward_inside_it():
    event, net = threading.Event(), _Chain()
    seen = []
    net.layers[0].weight.register_hook(lambda g: seen.append("layer 0"))
    net.layers[4].weight.register_hook(lambda g: event.set())  # the backward reaches layer 4: cancel
    with cancellable(event), interruptible("probing", net):
        loss = net(torch.ones(2, 5, dtype=torch.double)).pow(2).sum()
        with pytest.raises(Cancelled):
            loss.backward()
    assert seen == []  # the backward stopped before it reached the first layer


def test_a_cancel_stops_a_hessian_vector_product_inside_its_double_backward():
    # the stability estimate's product: no module hook runs in a double backward, only saved tensors are unpacked
    event = threading.Event()
    net = _Chain(on_double=event.set)
    x = torch.ones(2, 5, dtype=torch.double)
    with cancellable(event), interruptible("estimating", net):
        params = list(net.parameters())
        grads = torch.autograd.grad(net(x).pow(2).sum(), params, create_graph=True)
        assert not event.is_set()
        with pytest.raises(Cancelled, match="cancelled while estimating"):
            torch.autograd.grad(grads, params, grad_outputs=[torch.ones_like(p) for p in params])


def test_interruptible_passes_change_no_value_and_leave_no_hook_behind():
    x = torch.linspace(-1, 1, 10, dtype=torch.double).reshape(2, 5)
    plain = _hvp(_Chain(), x)  # a fresh net with the same seed: the same weights
    net = _Chain()
    with cancellable(threading.Event()), interruptible("estimating", net):
        inside = _hvp(net, x)
    for a, b in zip(plain, inside):
        assert torch.equal(a, b)
    assert all(not layer._forward_pre_hooks for layer in net.layers)
    event = threading.Event()
    event.set()
    with cancellable(event):
        net(x)  # outside interruptible nothing checks inside a pass


def test_close_session_cancels_a_stage_stuck_in_a_long_delta_probe(stub, source_weights_path, seen):
    session = stub.CreateSession(pb.CreateSessionRequest(
        backbone=pb.BackboneSpec(name="small_resnet", width=4), source_weights=source_weights_path,
        data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=5, val_per_class=2)))
    logged = seen("DELTA probe: 100000 head-only steps")
    stage = pb.StageSpec(name="delta", regularizer=pb.Regularizer(delta=pb.Delta(alpha=0.1, head_iterations=100_000)),
                         optimizer=pb.OptimizerSpec(lr=0.01), iterations=10, batch_size=8)
    events = stub.RunStage(pb.RunStageRequest(session_id=session.session_id, stage=stage))
    received, probing = [], threading.Event()

    def read() -> None:
        for event in events:
            received.append(event)
            if event.WhichOneof("event") == "progress" and event.progress.phase == "delta_probe":
                probing.set()

    reader = threading.Thread(target=read)
    reader.start()
    # the probe's start reaches the client as it happens (a progress event), and the worker's log says so
    assert probing.wait(120), received
    assert logged.event.wait(120), logged.lines
    started = time.perf_counter()
    stub.CloseSession(pb.CloseSessionRequest(session_id=session.session_id))  # returns once the stage stopped
    closed_after = time.perf_counter() - started
    reader.join(60)
    summary = received[-1].summary
    assert summary.status == pb.STAGE_STATUS_CANCELLED
    assert "cancelled while training DELTA's head-only probe" in summary.message
    # 100,000 probe steps take minutes; the cancel lands at the next one (generous bound for a loaded machine)
    assert closed_after < 10, closed_after
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(pb.EvaluateRequest(session_id=session.session_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def source_weights_path(tmp_path_factory) -> str:
    from afa_worker.backbones import build_backbone
    from afa_worker.checkpoint import save_checkpoint

    model = build_backbone("small_resnet", num_classes=10, in_channels=1, width=4)
    path, *_ = save_checkpoint(model, str(tmp_path_factory.mktemp("src") / "w4"), {})
    return path
