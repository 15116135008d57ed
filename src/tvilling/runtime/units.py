"""Small ``async with`` units the runtime is made of: a background task, a feed follower.

>>> import asyncio
>>> async def main() -> bool:
...     async def forever() -> None:
...         await asyncio.Event().wait()
...     unit = BackgroundTask("example", forever)
...     async with unit:
...         running = unit.running
...     return running and not unit.running
>>> asyncio.run(main())
True
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self, TypeVar

from tvilling.streams.consumer import Batch, Consumer

log = logging.getLogger("tvilling.runtime")
T = TypeVar("T")


class StackUnit(ABC):
    """A unit made of other units: :meth:`_open` enters them on a stack; leaving unwinds it in reverse
    (and a unit that fails to start stops those entered before it)."""

    _stack: AsyncExitStack | None = None

    @abstractmethod
    async def _open(self, stack: AsyncExitStack) -> None:
        """Enter the units this one is made of on ``stack``."""

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await self._open(stack)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)


class BackgroundTask:
    """Runs ``factory()`` as a task of the loop while entered; cancels it (and waits for it) on exit.

    A task that ends by itself with an error is logged; the runtime goes on without it.
    """

    def __init__(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self.factory = factory
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while the task runs."""
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> BackgroundTask:
        if self.running:
            raise RuntimeError(f"the background task {self.name!r} is running already")
        self._task = asyncio.create_task(self.factory(), name=f"tvilling-{self.name}")
        self._task.add_done_callback(self._ended)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s stopped", self.name, exc_info=task.exception())


async def follow(consumer: Consumer[T], handle: Callable[[Batch[T]], Awaitable[None] | None], *,
                 retry_s: float = 1.0) -> None:
    """Hand every batch of ``consumer`` to ``handle`` forever (cancel to stop).

    A failing ``handle`` is logged and, after ``retry_s``, the consumer resumes after its
    last acknowledged batch (so the failed batch is handed again).
    """
    while True:
        try:
            async with consumer:
                async for batch in consumer:
                    result = handle(batch)
                    if result is not None:
                        await result
        except Exception:
            log.exception("consumer %s failed on a batch; retrying in %.1f s", consumer.name, retry_s)
            await asyncio.sleep(retry_s)
