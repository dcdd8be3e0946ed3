"""Waiting for a condition with a deadline: the one helper every test tier uses.

A test never sleeps a fixed time and hopes. It asks again and again, a short
``interval`` apart, until ``check`` returns something truthy (which is
returned) or ``deadline`` seconds have passed; then it fails, naming ``what``
it waited for, the last value or exception seen, and ``context()`` (a log
tail, say). Exceptions in ``ignore`` count as "not yet" (a server that is not
listening yet); anything else, including an ``AssertionError`` a check raises
to give up early (the process under test exited), ends the wait at once.

``poll`` is for plain functions, ``apoll`` for coroutines and plain functions
alike (it never blocks the event loop).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["DEFAULT_IGNORE", "apoll", "poll"]

T = TypeVar("T")

#: What a check may raise while the system under test is still coming up.
DEFAULT_IGNORE: tuple[type[BaseException], ...] = (OSError, TimeoutError, ValueError, KeyError)


def _failure(what: str, deadline: float, last: Any, context: Callable[[], str] | None) -> str:
    message = f"timed out after {deadline:g}s waiting for {what}; last: {last!r}"
    if context is not None:
        message += "\n" + context()
    return message


def poll(
    check: Callable[[], T],
    what: str,
    deadline: float = 60.0,
    *,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = DEFAULT_IGNORE,
    context: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns a truthy value (returned) or ``deadline`` passes."""
    end = time.monotonic() + deadline
    last: Any = None
    while True:
        try:
            last = check()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= end:
            raise AssertionError(_failure(what, deadline, last, context))
        time.sleep(interval)


async def apoll(
    check: Callable[[], T | Awaitable[T]],
    what: str,
    deadline: float = 60.0,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = DEFAULT_IGNORE,
    context: Callable[[], str] | None = None,
) -> T:
    """``poll`` for the event loop: ``check`` may be a coroutine function."""
    end = time.monotonic() + deadline
    last: Any = None
    while True:
        try:
            result = check()
            last = await result if inspect.isawaitable(result) else result
        except ignore as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[no-any-return]
        if time.monotonic() >= end:
            raise AssertionError(_failure(what, deadline, last, context))
        await asyncio.sleep(interval)
