"""The suite's one polling helper: it returns the first truthy answer, fails in time."""

from __future__ import annotations

import time

import pytest

from polling import apoll, poll


def test_poll_returns_the_first_truthy_value_and_ignores_transient_errors() -> None:
    answers = iter([ConnectionRefusedError(), 0, "", {"ready": True}])

    def check() -> object:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll(check, "readiness", 5, interval=0.001) == {"ready": True}


def test_poll_fails_at_the_deadline_naming_what_and_the_last_answer() -> None:
    began = time.monotonic()
    with pytest.raises(AssertionError, match=r"waiting for the moon; last: 0\nlog tail"):
        poll(lambda: 0, "the moon", 0.2, interval=0.01, context=lambda: "log tail")
    assert 0.2 <= time.monotonic() - began < 2


def test_an_assertion_in_the_check_ends_the_wait_at_once() -> None:
    def check() -> bool:
        raise AssertionError("the process exited")

    began = time.monotonic()
    with pytest.raises(AssertionError, match="the process exited"):
        poll(check, "never", 30)
    assert time.monotonic() - began < 1


async def test_apoll_takes_coroutines_and_plain_functions() -> None:
    calls = []

    async def check() -> int:
        calls.append(1)
        return len(calls) >= 3

    assert await apoll(check, "three calls", 5, interval=0.001) is True
    assert await apoll(lambda: 7, "seven", 1) == 7
    with pytest.raises(AssertionError, match="timed out"):
        await apoll(lambda: None, "nothing", 0.05, interval=0.01)
