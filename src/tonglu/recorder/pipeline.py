"""One pipeline thread per process for every recorded track (segment decisions, muxing).

aiortc starts a thread per receiver; the recorder used to run each track's pipeline in it. At 64
tracks that is 64 threads woken every `seam.WAKE_S`, each taking the GIL for a frame or two, and
the event loop (which receives every packet) queued behind all of them for the GIL: loop lag p99
went over 100 ms while the core still had room. Now aiortc's thread only registers its track
here (`Lane`) and ends; this one thread, woken once per batch, drains every lane that has frames.

A lane's consumer implements `step(item)` for each queued item, `finish()` when aiortc's
end-of-stream `None` arrives, and `fail(exc)` when `step` or `finish` raised: a failed lane's
later items are discarded until its `None` (what the per-receiver thread did), and the other
lanes go on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from tonglu.recorder.priority import PIPELINE_NICE, lower_this_thread

log = logging.getLogger(__name__)


class Consumer(Protocol):
    def step(self, item: Any) -> None: ...

    def finish(self) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


@dataclass(eq=False)
class Lane:
    items: Any  # seam.DropQueue (a queue.Queue): its deque and mutex are used directly
    consumer: Consumer
    failed: bool = False
    done: bool = False


@dataclass(eq=False)
class SharedPipeline:
    name: str = "pipeline"
    _lanes: list[Lane] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def add(self, items: Any, consumer: Consumer) -> Lane:
        lane = Lane(items, consumer)
        with self._lock:
            self._lanes.append(lane)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._wake.set()
        return lane

    def wake(self) -> None:
        self._wake.set()

    @property
    def lanes(self) -> int:
        with self._lock:
            return len(self._lanes)

    def _run(self) -> None:
        lower_this_thread(PIPELINE_NICE)  # the event loop goes first (recorder.priority)
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                lanes = list(self._lanes)
            finished = [lane for lane in lanes if self._drain(lane)]
            if finished:
                with self._lock:
                    self._lanes = [lane for lane in self._lanes if not lane.done]

    def _drain(self, lane: Lane) -> bool:
        """Process everything queued on `lane`; True when its end-of-stream was reached."""
        q = lane.items
        with q.mutex:
            batch = list(q.queue)
            q.queue.clear()
            q.unfinished_tasks = 0
        consumer = lane.consumer
        for item in batch:
            if item is None:
                if not lane.failed:
                    try:
                        consumer.finish()
                    except Exception as exc:
                        self._fail(lane, exc)
                lane.done = True
                return True
            if lane.failed:
                continue
            try:
                consumer.step(item)
            except Exception as exc:
                self._fail(lane, exc)
        return False

    @staticmethod
    def _fail(lane: Lane, exc: BaseException) -> None:
        lane.failed = True
        try:
            lane.consumer.fail(exc)
        except Exception:
            log.exception("pipeline consumer failed while failing")


_shared: SharedPipeline | None = None
_shared_lock = threading.Lock()


def shared() -> SharedPipeline:
    """The process's pipeline (started with its first lane)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SharedPipeline()
        return _shared
