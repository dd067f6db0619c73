"""Keep a few batches ready in a background thread, so the trainer rarely waits on the network."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetcher(Generic[T]):
    """Iterate ``source`` in a thread, ``depth`` items ahead; errors surface in the consumer.

    ``transform`` runs in that thread too, off the training loop: e.g. pinning batches for the GPU copy.
    """

    def __init__(self, source: Iterator[T], depth: int = 4, transform: Callable[[T], T] | None = None):
        self._source = source
        self._transform = transform
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        # In the caller's context, so what the source logs counts as the caller's (a job's log, say).
        fill = contextvars.copy_context().run
        self._thread = threading.Thread(target=fill, args=(self._fill,), name="prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        try:
            for item in self._source:
                if self._transform is not None:
                    item = self._transform(item)
                if not self._put(item):
                    return
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(e)
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = self._queue.get()
        if item is _DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        if not self._thread.is_alive() and hasattr(self._source, "close"):
            self._source.close()  # ends an open gRPC stream now rather than at garbage collection
