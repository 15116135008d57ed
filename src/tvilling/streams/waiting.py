"""Waiting for an event with a time limit, without ever losing a cancellation.

``asyncio.wait_for(event.wait(), t)`` can swallow the cancellation of the task that waits
when the event is set at the same moment (Python 3.11): the task then runs on, and whoever
stops it waits forever. :func:`wait_set` uses ``asyncio.timeout``, which tells its own
timeout apart from a cancellation from outside.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set (``True``) or ``timeout`` seconds pass (``False``)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
