"""The in-flight window of a bulk run: submit ahead, finish in input order.

At most ``size`` chunks are out at once (back-pressure: memory stays bounded however
large the input), and the oldest is finished first, so output is written in input
order while the chunks behind it are already being computed by the workers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    def __init__(self, size: int, finish: Callable[[T], None]) -> None:
        if size < 1:
            raise ValueError("a window holds at least one item")
        self.size = size
        self._finish = finish
        self._items: deque[T] = deque()

    def add(self, item: T) -> None:
        """Hold a submitted item; when the window is full, finish the oldest first."""
        self._items.append(item)
        if len(self._items) >= self.size:
            self._finish(self._items.popleft())

    def abandon(self) -> list[T]:
        """Give up every item still held (the run ended otherwise), oldest first."""
        items = list(self._items)
        self._items.clear()
        return items

    def drain(self) -> None:
        """Finish every item still held, oldest first."""
        while self._items:
            self._finish(self._items.popleft())
