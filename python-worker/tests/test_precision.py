"""The session's precision: what each choice resolves to, what the worker reports, bad values."""

from __future__ import annotations

import grpc
import pytest
import torch

from afa_worker import precision
from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.errors import SpecError
from afa_worker.precision import resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("bf16_units, source", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cpu_trains_fp32_and_runs_the_source_in_bf16_only_where_fast(monkeypatch, bf16_units, source):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: bf16_units)
    plan = resolve_precision(pb.PRECISION_AUTO, CPU)
    assert (plan.train, plan.source) == (torch.float32, source)
    assert plan.describe() == ("fp32, source bf16" if bf16_units else "fp32")
    assert plan.source_bytes == (2 if bf16_units else 4)


def test_explicit_choices_hold_on_any_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    fp32 = resolve_precision(pb.PRECISION_FP32, CPU)
    assert (fp32.train, fp32.source, fp32.describe()) == (torch.float32, torch.float32, "fp32")
    bf16 = resolve_precision(pb.PRECISION_BF16, CPU)
    assert (bf16.train, bf16.source, bf16.describe()) == (torch.bfloat16, torch.bfloat16, "bf16")


def test_autocast_contexts_compute_in_the_planned_dtype():
    plan = resolve_precision(pb.PRECISION_BF16, CPU)
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.randn(1, 1, 5, 5)
    with plan.source_autocast():
        assert conv(x).dtype == torch.bfloat16
    with resolve_precision(pb.PRECISION_FP32, CPU).train_autocast():
        assert conv(x).dtype == torch.float32


def test_unknown_precision_names_the_field_and_the_choices():
    with pytest.raises(SpecError) as err:
        resolve_precision(7, CPU)
    assert err.value.field == "precision" and err.value.valid == ["auto", "fp32", "bf16"]


def _request(choice: int) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4),
                                   data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2), precision=choice)


def test_worker_reports_the_resolved_precision_and_refuses_unknown_ones(stub):
    assert stub.CreateSession(_request(pb.PRECISION_FP32)).precision == "fp32"
    assert stub.CreateSession(_request(pb.PRECISION_BF16)).precision == "bf16"
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateSession(_request(9))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("precision: unknown precision 9") and "fp32" in err.value.details()
    assert stub.GetInfo(pb.GetInfoRequest()).active_sessions >= 2

