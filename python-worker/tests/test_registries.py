"""Every list of choices is defined once: each worker registry must name exactly the kinds of its
proto oneof, and the check that enforces it fails loudly on a registry that drifts."""

from __future__ import annotations

import pytest

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.contract import check_registry, oneof_fields
from afa_worker.data import DATASETS
from afa_worker.regularizers import REGULARIZERS


def test_regularizer_registry_is_the_proto_oneof():
    assert list(REGULARIZERS) == oneof_fields(pb.Regularizer, "kind")


def test_dataset_registry_is_the_proto_oneof():
    assert list(DATASETS) == oneof_fields(pb.DataSpec, "dataset")


def test_a_kind_the_worker_does_not_handle_fails_the_check():
    partial = {k: v for k, v in REGULARIZERS.items() if k != "delta"}
    with pytest.raises(ImportError, match=r"not handled \['delta'\]"):
        check_registry(partial, pb.Regularizer, "kind")
    with pytest.raises(ImportError, match=r"not in the proto \['dropout'\]"):
        check_registry({**REGULARIZERS, "dropout": None}, pb.Regularizer, "kind")


@pytest.mark.parametrize("kind", list(REGULARIZERS))
def test_each_kind_states_its_facts_on_its_module(kind):
    module = REGULARIZERS[kind].module
    assert module.name == kind
    # aligning feature maps needs a source; attention is only ever learned on aligned maps
    assert not module.needs_source_features or module.needs_source
    assert not module.has_attention or module.needs_source_features
    assert module.needs_source == (kind not in ("none", "l2fe"))
