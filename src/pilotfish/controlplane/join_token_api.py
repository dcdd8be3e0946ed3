"""``POST /pilotfish/v1/jointokens``: create a join token (an admin action).

The route is behind the API's bearer-token middleware like every route but
``/ready`` and ``/metrics`` (``auth``): only who holds the API token (the
mesh's admin) can let a host in. The body is ``{"namespace",
"serviceAccount"?, "workloadGroup"?, "ttlSeconds"}``. A named WorkloadGroup
must exist in the namespace; its ``template.serviceAccount`` is the
identity when none is given, and must equal the one given otherwise. The
answer, ``Cache-Control: no-store``, carries the token (shown this once; the
CA keeps only its digest), the grant, the trust domain and the mesh root
certificate and the group's labels: everything the joining host needs besides the control plane's
addresses (as Istio's VM bundle carries ``root-cert.pem`` and the token).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pilotfish.api.networking.workload_group import WorkloadGroupSpec
from pilotfish.api.resource import ResourceKey
from pilotfish.ca import MeshCa
from pilotfish.ca.join_tokens import MAX_TTL_SECONDS
from pilotfish.controlplane.api_problem import Problem, read_body
from pilotfish.store import Store

__all__ = ["JOIN_TOKENS_PATH", "add_join_token_api"]

JOIN_TOKENS_PATH = "/pilotfish/v1/jointokens"
_MAX_BODY = 4096


def add_join_token_api(
    app: web.Application, ca: Callable[[], MeshCa | None], store: Callable[[], Store]
) -> None:
    """Serve the route on ``app``; ``ca()`` is None while (or when) no CA runs."""

    async def create(request: web.Request) -> web.Response:
        try:
            mesh_ca = ca()
            if mesh_ca is None:
                raise Problem(409, "the control plane runs no mesh CA (start it with --ca-dir)")
            namespace, account, group, ttl = _parse(await read_body(request, _MAX_BODY))
            account, labels = _group_identity(store(), namespace, account, group)
            try:
                new = mesh_ca.join_tokens.create(namespace, account, group, ttl)
            except ValueError as exc:
                raise Problem(400, str(exc)) from exc
        except Problem as problem:
            return problem.response()
        body: dict[str, Any] = {
            "token": new.token,
            **new.grant.to_json(),
            "labels": labels,
            "trustDomain": mesh_ca.trust_domain,
            "rootCert": mesh_ca.root_pem,
        }
        return web.json_response(body, status=201, headers={"Cache-Control": "no-store"})

    app.router.add_post(JOIN_TOKENS_PATH, create)


def _parse(text: str) -> tuple[str, str, str, float]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise Problem(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise Problem(400, "the body must be a JSON object")
    unknown = sorted(set(doc) - {"namespace", "serviceAccount", "workloadGroup", "ttlSeconds"})
    if unknown:
        raise Problem(400, f"unknown field(s): {', '.join(unknown)}")
    namespace = doc.get("namespace")
    account = doc.get("serviceAccount", "")
    group = doc.get("workloadGroup", "")
    ttl = doc.get("ttlSeconds")
    if not isinstance(namespace, str) or not namespace:
        raise Problem(400, "'namespace' must be a non-empty string")
    if not isinstance(account, str) or not isinstance(group, str):
        raise Problem(400, "'serviceAccount' and 'workloadGroup' must be strings")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL_SECONDS:
        raise Problem(400, f"'ttlSeconds' must be a number in (0, {MAX_TTL_SECONDS}]")
    return namespace, account, group, float(ttl)


def _group_identity(
    store: Store, namespace: str, account: str, group: str
) -> tuple[str, dict[str, str]]:
    """The service account the token is for, checked against the WorkloadGroup, and
    the group's labels (the joined proxy's own, for the policies that select it)."""
    if not group:
        return account or "default", {}
    resource = store.get(ResourceKey("WorkloadGroup", namespace, group))
    if resource is None:
        raise Problem(404, f"WorkloadGroup {namespace}/{group} does not exist")
    spec = resource.spec
    assert isinstance(spec, WorkloadGroupSpec)
    templated = spec.template.service_account or "default"
    if account and account != templated:
        raise Problem(
            400,
            f"service account {account!r} is not WorkloadGroup {namespace}/{group}'s "
            f"template.serviceAccount {templated!r}",
        )
    return templated, {**spec.template.labels, **spec.metadata.labels}
