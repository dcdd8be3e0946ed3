"""Pod users: a dedicated uid per pod, stable, persisted; forbidden ids refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.runtime.pod_spec import PodSpec, PodSpecError
from pilotfish.runtime.users import POD_ID_RANGE, PodUser, UserAllocator


def _spec(name: str, **context: int) -> PodSpec:
    return PodSpec(name, name.rsplit("-", 1)[0], "default", ("true",), **context)  # type: ignore[arg-type]


def test_each_pod_gets_its_own_stable_user(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    users = UserAllocator(path)
    a, b = users.user_for(_spec("a-0")), users.user_for(_spec("b-0"))
    assert a.uid in POD_ID_RANGE and b.uid in POD_ID_RANGE and a.uid != b.uid
    assert a == PodUser(a.uid, a.uid)
    assert users.user_for(_spec("a-0")) == a
    # Persisted (root only): a new supervisor finds the same ids.
    assert path.stat().st_mode & 0o777 == 0o600
    again = UserAllocator(path)
    assert again.user_for(_spec("b-0")) == b
    assert again.user_for(_spec("c-0")).uid not in (a.uid, b.uid)


def test_security_context_is_honoured_and_checked(tmp_path: Path) -> None:
    users = UserAllocator(tmp_path / "users.json")
    assert users.user_for(_spec("a-0", run_as_user=4242)) == PodUser(4242, 4242)
    assert users.user_for(_spec("a-0", run_as_user=4242, run_as_group=5000)) == PodUser(4242, 5000)
    own = users.user_for(_spec("b-0", run_as_group=5000))
    assert own.uid in POD_ID_RANGE and own.gid == 5000
    for bad in ({"run_as_user": 0}, {"run_as_user": 1337}, {"run_as_group": 1337},
                {"run_as_user": POD_ID_RANGE.start + 3}):  # fmt: skip
        with pytest.raises(PodSpecError):
            users.user_for(_spec("c-0", **bad))


def test_the_range_runs_out_with_a_clear_error(tmp_path: Path) -> None:
    users = UserAllocator(tmp_path / "users.json", ids=range(300000, 300002))
    users.user_for(_spec("a-0"))
    users.user_for(_spec("b-0"))
    with pytest.raises(PodSpecError, match="no free pod user id"):
        users.user_for(_spec("c-0"))
