from __future__ import annotations

import pytest

from pilotfish.model.hosts import fqdn, is_wildcard, short_names


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("reviews", "default", "reviews.default.svc.cluster.local"),
        ("reviews", "prod", "reviews.prod.svc.cluster.local"),
        ("reviews.prod", "default", "reviews.prod.svc.cluster.local"),
        ("reviews.prod.svc", "default", "reviews.prod.svc.cluster.local"),
        ("reviews.prod.svc.cluster.local", "default", "reviews.prod.svc.cluster.local"),
        ("Reviews.Prod.svc.cluster.local.", "default", "reviews.prod.svc.cluster.local"),
        ("api.example.com", "default", "api.example.com"),
        ("example.com", "default", "example.com"),
        ("*", "default", "*"),
        ("*.example.com", "default", "*.example.com"),
        ("10.0.0.1", "default", "10.0.0.1"),
        ("::1", "default", "::1"),
    ],
)
def test_fqdn(host: str, namespace: str, expected: str) -> None:
    assert fqdn(host, namespace) == expected


def test_fqdn_custom_domain_suffix() -> None:
    assert fqdn("reviews", "default", "mesh.internal") == "reviews.default.svc.mesh.internal"
    assert fqdn("reviews.default.svc.mesh.internal", "x", "mesh.internal") == (
        "reviews.default.svc.mesh.internal"
    )
    # A name under another cluster's suffix is not rewritten.
    assert fqdn("reviews.default.svc", "x", "mesh.internal") == "reviews.default.svc.mesh.internal"


def test_two_label_names_use_known_namespaces_when_given() -> None:
    assert fqdn("web.shop", "default", known_namespaces={"shop"}) == "web.shop.svc.cluster.local"
    assert fqdn("web.io", "default", known_namespaces={"shop"}) == "web.io"
    # Without the list, a public top-level domain means an external name.
    assert fqdn("web.io", "default") == "web.io"
    assert fqdn("web.shop", "default") == "web.shop.svc.cluster.local"


def test_is_wildcard() -> None:
    assert is_wildcard("*") and is_wildcard("*.a.com")
    assert not is_wildcard("a.com") and not is_wildcard("a*.com")


def test_short_names_same_namespace_includes_bare_name() -> None:
    assert short_names("reviews.default.svc.cluster.local", "default") == (
        "reviews",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
    )


def test_short_names_other_namespace_excludes_bare_name() -> None:
    assert short_names("reviews.default.svc.cluster.local", "prod") == (
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
    )


def test_short_names_of_non_service_names() -> None:
    assert short_names("api.example.com", "default") == ("api.example.com",)
    assert short_names("a.b.c.cluster.local", "default") == ("a.b.c.cluster.local",)
    assert short_names("reviews.default.svc.other.local", "default") == (
        "reviews.default.svc.other.local",
    )


def test_short_names_round_trip_through_fqdn() -> None:
    full = "ratings.shop.svc.cluster.local"
    for name in short_names(full, "shop"):
        assert fqdn(name, "shop") == full
