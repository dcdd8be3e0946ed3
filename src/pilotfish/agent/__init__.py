"""The per-proxy agent: writes Envoy's bootstrap, runs and supervises Envoy,
reports readiness on ``/healthz/ready`` and drains Envoy on shutdown."""

from __future__ import annotations

from pilotfish.agent.agent import Agent
from pilotfish.agent.bootstrap import build_bootstrap, write_bootstrap
from pilotfish.agent.config import AgentConfig, ConfigError

__all__ = ["Agent", "AgentConfig", "ConfigError", "build_bootstrap", "write_bootstrap"]
