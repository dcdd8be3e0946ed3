"""``compose`` is what the control plane sends, and what it sends is consistent.

For every golden case and every proxy in it: the generator's serialized
resources equal the build of ``compose``'s IR, byte for byte and name for name
(so the goldens, which go through ``compose``, test the production path), and
that set passes the consistency check (every RDS, EDS and ADS SDS name a
listener or cluster uses is in it).
"""

from __future__ import annotations

import pytest
from translate_cases import case_names, case_views, load_snapshot

from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.translate.compose import compose
from pilotfish.translate.security.secrets import credential_secrets
from pilotfish.xds.build import build_all, pack
from pilotfish.xds.consistency import Violation, check
from pilotfish.xds.types import (
    ADS_PUSH_ORDER,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
)

CASES = case_names()


def _composed_bytes(case: str, view: ProxyView) -> dict[str, dict[str, bytes]]:
    """The build of ``compose``'s IR, serialized as the generator serializes it."""
    config = compose(load_snapshot(case), view)
    names = {
        CLUSTER_TYPE: [x.name for x in config.clusters],
        ENDPOINT_TYPE: [x.cluster_name for x in config.load_assignments],
        LISTENER_TYPE: [x.name for x in config.listeners],
        ROUTE_TYPE: [x.name for x in config.route_configs],
        SECRET_TYPE: [x.name for x in config.secrets],
    }
    for type_url, listed in names.items():
        assert len(listed) == len(set(listed)), f"{case}: duplicate names in {type_url}"
    return {
        url: dict(zip(names[url], (pack(m) for m in messages), strict=True))
        for url, messages in build_all(config).items()
    }


@pytest.mark.parametrize("case", CASES)
def test_generator_sends_the_build_of_compose(case: str) -> None:
    generator = MeshGenerator()
    generator.set_snapshot(load_snapshot(case))
    for proxy, view in case_views(case).items():
        sent = generator.generate(view)
        expected = _composed_bytes(case, view)
        for type_url in ADS_PUSH_ORDER:
            got = dict(sent[type_url].resources) if type_url in sent else {}
            assert got == expected[type_url], f"{case} / {proxy}: {type_url} differs"


@pytest.mark.parametrize("case", CASES)
def test_every_golden_proxy_is_consistent(case: str) -> None:
    """Nothing is ever missing except the SDS secrets of ``credentialName`` Secrets
    the case's configuration lacks (a user error translation warns about: the
    cluster waits for the Secret); those are reported, as ``/debug/syncz`` does."""
    snapshot = load_snapshot(case)
    generator = MeshGenerator()
    generator.set_snapshot(snapshot)
    for proxy, view in case_views(case).items():
        sets = generator.generate(view)
        found = check({t: rs.resources for t, rs in sets.items()})
        assert generator.violations(view) == found
        for violation in found:
            assert violation.kind == SECRET_TYPE, f"{case} / {proxy}: {violation}"
            assert credential_secrets(snapshot, violation.missing) == (), violation
        report = generator.consistency_report(view)
        assert report == [{"kind": v.kind, "missing": list(v.missing)} for v in found]


def test_the_check_finds_what_is_missing() -> None:
    """The same sets with one route configuration, one load assignment and one
    secret taken out: each is reported under its type."""
    case = "security-gateway-tls"
    view = case_views(case)["gateway"]
    full = _composed_bytes(case, view)
    assert check(full) == ()
    routes, eds, secrets = ROUTE_TYPE, ENDPOINT_TYPE, SECRET_TYPE
    dropped = {url: sorted(full[url])[0] for url in (routes, eds, secrets)}
    partial = {
        url: {n: b for n, b in named.items() if dropped.get(url) != n}
        for url, named in full.items()
    }
    assert check(partial) == tuple(
        Violation(url, (dropped[url],)) for url in sorted((routes, eds, secrets))
    )
