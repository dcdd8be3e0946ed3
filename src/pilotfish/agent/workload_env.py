"""The environment the agent gives Envoy: facts about its own workload.

Envoy reads them with ``%ENVIRONMENT(...)%`` in the metric labels the control
plane sends (``pilotfish.peer_labels``), so the configuration itself stays
free of workload names. The app, version and canonical service and revision
follow Istio's label precedence; a fact the agent does not have is
``unknown``, never unset (Envoy would print ``-``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pilotfish.agent.config import AgentConfig
from pilotfish.peer_labels import (
    ENV_CANONICAL_SERVICE,
    ENV_PEER,
    ENV_PRINCIPAL,
    PEER_HEADERS,
    UNKNOWN,
    peer_record,
    workload_facts,
)

__all__ = ["envoy_environment", "service_cluster", "workload_labels"]

# The OpenTelemetry tracer's environment resource detector reads this.
OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"


def workload_labels(config: AgentConfig) -> dict[str, str]:
    """The variable -> value map for ``config``'s workload (see the module docstring)."""
    facts = workload_facts(
        config.workload or config.name, config.namespace, dict(config.labels), config.cluster_id
    )
    labels = {var: facts[suffix] for suffix, _header, var in PEER_HEADERS}
    labels[ENV_PRINCIPAL] = config.spiffe_id if config.ca_enabled else UNKNOWN
    labels[ENV_PEER] = peer_record(facts)
    return labels


def service_cluster(config: AgentConfig) -> str:
    """``<canonical service>.<namespace>``: Envoy's node cluster and the service
    name of the workload's spans, as in Istio."""
    return f"{workload_labels(config)[ENV_CANONICAL_SERVICE]}.{config.namespace}"


def envoy_environment(config: AgentConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Envoy's environment: ``base`` (the agent's own by default) plus the workload's facts."""
    env = dict(os.environ if base is None else base)
    env.update(workload_labels(config))
    env[OTEL_RESOURCE_ATTRIBUTES] = f"service.name={service_cluster(config)}"
    return env
