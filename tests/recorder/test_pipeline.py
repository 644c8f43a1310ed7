"""The shared pipeline thread: every lane drained in order, end-of-stream finishes a lane, and a
consumer that raises fails alone (its later frames discarded until end-of-stream)."""

from __future__ import annotations

import threading
from typing import Any

from tonglu.recorder.aiortc.seam import DropQueue
from tonglu.recorder.pipeline import SharedPipeline


class Recorder:
    def __init__(self, fail_on: Any = None) -> None:
        self.items: list[Any] = []
        self.finished = threading.Event()
        self.failed: BaseException | None = None
        self.fail_on = fail_on
        self.thread: str | None = None

    def step(self, item: Any) -> None:
        self.thread = threading.current_thread().name
        if item == self.fail_on:
            raise ValueError(f"bad frame {item}")
        self.items.append(item)

    def finish(self) -> None:
        self.finished.set()

    def fail(self, exc: BaseException) -> None:
        self.failed = exc
        self.finished.set()


def test_lanes_share_one_thread_and_fail_alone() -> None:
    p = SharedPipeline(name="test-pipeline")
    good, bad = Recorder(), Recorder(fail_on=3)
    qg, qb = DropQueue(100), DropQueue(100)
    for q, consumer in ((qg, good), (qb, bad)):
        q.notify = p.wake
        p.add(q, consumer)
    for i in range(10):
        qg.put(i)
        qb.put(i)
    assert bad.finished.wait(5)
    assert isinstance(bad.failed, ValueError)
    for i in range(10, 20):
        qg.put(i)
        qb.put(i)  # discarded: the lane failed
    qg.put(None)
    qb.put(None)
    assert good.finished.wait(5)
    assert good.items == list(range(20)) and good.failed is None
    assert bad.items == [0, 1, 2]
    assert good.thread == bad.thread == "test-pipeline"
    deadline = threading.Event()
    for _ in range(50):
        if p.lanes == 0:
            break
        deadline.wait(0.05)
    assert p.lanes == 0


def test_deferred_frames_wait_for_the_wake() -> None:
    """`defer` (the event loop's path) queues without waking; `wake` delivers the whole batch."""
    p = SharedPipeline(name="test-pipeline-2")
    c = Recorder()
    q = DropQueue(100)
    q.notify = p.wake
    p.add(q, c)

    class NoWaker:
        def mark(self, q: DropQueue) -> None:
            pass

    q.waker = NoWaker()  # type: ignore[assignment]
    q.put("first")  # woken at once (put, not defer)
    for _ in range(100):
        if c.items:
            break
        threading.Event().wait(0.02)
    assert c.items == ["first"]
    threading.Event().wait(0.1)  # any wake still pending from add/put is consumed
    for i in range(5):
        q.defer(i)
    threading.Event().wait(0.2)
    assert c.items == ["first"]
    q.wake()
    q.put(None)
    assert c.finished.wait(5)
    assert c.items == ["first", 0, 1, 2, 3, 4]


def test_background_threads_yield_to_the_event_loop() -> None:
    """Sealer and pipeline threads run at a higher nice value than the thread that made them."""
    from tonglu.recorder.context import RecorderContext
    from tonglu.recorder.priority import PIPELINE_NICE, SEAL_NICE, nice_of_this_thread

    base = nice_of_this_thread()
    ctx = RecorderContext(settings=None, spool=None, ledger=None)  # type: ignore[arg-type]
    try:
        assert ctx.submit(nice_of_this_thread).result(5) == min(19, base + SEAL_NICE)
    finally:
        ctx.sealer.shutdown()
    p = SharedPipeline(name="test-pipeline-3")

    class Probe(Recorder):
        def step(self, item: Any) -> None:
            self.items.append(nice_of_this_thread())

    c = Probe()
    q = DropQueue(10)
    q.notify = p.wake
    p.add(q, c)
    q.put("x")
    q.put(None)
    assert c.finished.wait(5)
    assert c.items == [min(19, base + PIPELINE_NICE)]
