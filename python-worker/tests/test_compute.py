"""The per-session compute thread: calls and streams run on one thread, errors and early exits
reach the right side."""

from __future__ import annotations

import threading

import pytest

from afa_worker._gen.afa.v1 import afa_pb2 as pb
from afa_worker.compute import EVENT_BUFFER, ComputeThread


def test_calls_run_on_one_thread_in_order_and_errors_reach_the_caller():
    compute = ComputeThread()
    try:
        threads = {compute.call(threading.get_ident) for _ in range(5)}
        assert len(threads) == 1 and threading.get_ident() not in threads
        assert compute.call(lambda a, b=0: a + b, 2, b=3) == 5
        with pytest.raises(KeyError, match="nope"):
            compute.call(lambda: {}["nope"])
        assert compute.call(lambda: 1) == 1  # still serving after an error
    finally:
        compute.close()


def test_stream_yields_every_item_and_raises_the_iterators_error():
    compute = ComputeThread()

    def events():
        yield from range(EVENT_BUFFER * 3)  # more than the buffer: the loop waits for the reader

    def failing():
        yield "first"
        raise ValueError("bad stage")

    try:
        assert list(compute.stream(events, abandon=lambda: None)) == list(range(EVENT_BUFFER * 3))
        stream = compute.stream(failing, abandon=lambda: None)
        assert next(stream) == "first"
        with pytest.raises(ValueError, match="bad stage"):
            next(stream)
    finally:
        compute.close()


def test_a_reader_that_stops_early_abandons_and_the_iterator_is_closed_on_the_compute_thread():
    compute = ComputeThread()
    cancel = threading.Event()
    cleaned_on: list[int] = []
    done = threading.Event()

    def stage():
        try:
            step = 0
            while not cancel.is_set():
                yield step
                step += 1
        finally:
            cleaned_on.append(threading.get_ident())
            done.set()

    try:
        stream = compute.stream(stage, abandon=cancel.set)
        assert [next(stream) for _ in range(3)] == [0, 1, 2]
        stream.close()
        assert cancel.is_set() and done.wait(5)
        assert cleaned_on == [compute.call(threading.get_ident)]
    finally:
        compute.close()


def test_close_ends_the_thread():
    compute = ComputeThread(name="afa-compute-close-test")
    thread = next(t for t in threading.enumerate() if t.name == "afa-compute-close-test")
    compute.close()
    thread.join(5)
    assert not thread.is_alive()


def test_sessions_one_after_another_reuse_one_compute_thread(stub):
    def compute_threads() -> int:
        return sum(t.name == "afa-compute" for t in threading.enumerate())

    request = pb.CreateSessionRequest(backbone=pb.BackboneSpec(name="small_resnet", width=4),
                                      data=pb.DataSpec(mnist=pb.MnistData(), labels_per_class=2))
    before = compute_threads()
    for _ in range(5):
        created = stub.CreateSession(request)
        stub.CloseSession(pb.CloseSessionRequest(session_id=created.session_id))
    assert compute_threads() <= before + 1
