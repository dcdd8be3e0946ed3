"""The iptables rules that hand a pod's TCP traffic to its sidecar (Istio-style).

Theory of operation (all in the ``nat`` table of the pod's own netns, so the
host is never touched):

- Inbound: PREROUTING sends every TCP packet arriving at the pod to
  ``PF_INBOUND``. Ports the sidecar must not intercept (its health and stats
  ports, and the two capture ports themselves) RETURN and reach the listening
  socket directly; everything else jumps to ``PF_IN_REDIRECT``, which
  REDIRECTs to the inbound port (15006). Envoy reads the original destination
  with ``SO_ORIGINAL_DST``.
- Outbound: OUTPUT sends locally generated TCP to ``PF_OUTPUT``. Traffic of
  the proxy user (uid/gid 1337) RETURNs, otherwise Envoy's own upstream
  connections would loop back into Envoy. The rest (the app's calls) is
  REDIRECTed to the outbound port (15001) via ``PF_REDIRECT``, except
  loopback destinations and ``exclude_outbound_cidrs``.
- Istio's special case: when Envoy (uid 1337) connects to a non-127.0.0.1
  address over ``lo``, the destination is this pod itself (an app that called
  its own service VIP and was load-balanced to its own pod). That connection
  jumps to ``PF_IN_REDIRECT`` so it enters through the inbound listener and
  gets inbound policy, just as if it came from another pod.

The rule order follows ``istio-iptables`` so that behaviour known from Istio
holds here. ``capture_rules`` is pure; ``restore_script`` renders the same
rules for ``iptables-restore`` so a pod's rules are applied in one atomic step.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.translate.names import INBOUND_PASSTHROUGH_SOURCE as PASSTHROUGH_SOURCE_IP

from .base import CaptureConfig

__all__ = [
    "CHAIN_INBOUND",
    "CHAIN_IN_REDIRECT",
    "CHAIN_OUTPUT",
    "CHAIN_REDIRECT",
    "INBOUND_PASSTHROUGH_SOURCE",
    "capture_rules",
    "restore_script",
]

CHAIN_INBOUND = "PF_INBOUND"
CHAIN_IN_REDIRECT = "PF_IN_REDIRECT"
CHAIN_OUTPUT = "PF_OUTPUT"
CHAIN_REDIRECT = "PF_REDIRECT"

# Envoy's inbound listener connects to the app from this source address
# (Istio's inbound passthrough convention), so those connections are never
# captured again even though they leave Envoy towards a local address.
INBOUND_PASSTHROUGH_SOURCE = f"{PASSTHROUGH_SOURCE_IP}/32"
_LOCALHOST = "127.0.0.1/32"


def _nat(*args: str) -> list[str]:
    return ["iptables", "-t", "nat", *args]


def capture_rules(capture: CaptureConfig) -> list[list[str]]:
    """The ``iptables`` argv lists that install ``capture`` in an empty nat table, in order.

    Each list is a full command (``["iptables", "-t", "nat", ...]``) meant to
    run inside the pod's netns. Chains are created first, then filled.
    """
    out = str(capture.outbound_port)
    inb = str(capture.inbound_port)
    uid = str(capture.proxy_uid)
    gid = str(capture.proxy_gid)
    rules: list[list[str]] = [
        _nat("-N", CHAIN_INBOUND),
        _nat("-N", CHAIN_REDIRECT),
        _nat("-N", CHAIN_IN_REDIRECT),
        _nat("-N", CHAIN_OUTPUT),
        # The two redirect targets: app traffic to the outbound listener,
        # traffic for the pod to the inbound listener.
        _nat("-A", CHAIN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", out),
        _nat("-A", CHAIN_IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", inb),
        # Inbound: every TCP packet that arrives at the pod is considered.
        _nat("-A", "PREROUTING", "-p", "tcp", "-j", CHAIN_INBOUND),
    ]
    # Ports that reach their listener directly: the capture ports themselves
    # (redirecting them would only loop) and the sidecar's own health/stats
    # ports, which kubelet-style probes and scrapers must reach without Envoy.
    skip_inbound: list[int] = []
    for port in (capture.outbound_port, capture.inbound_port, *capture.exclude_inbound_ports):
        if port not in skip_inbound:
            skip_inbound.append(port)
    for port in skip_inbound:
        rules.append(_nat("-A", CHAIN_INBOUND, "-p", "tcp", "--dport", str(port), "-j", "RETURN"))
    rules += [
        # Everything else arriving at the pod goes to the inbound listener.
        _nat("-A", CHAIN_INBOUND, "-p", "tcp", "-j", CHAIN_IN_REDIRECT),
        # Outbound: every TCP connection opened inside the pod is considered.
        _nat("-A", "OUTPUT", "-p", "tcp", "-j", CHAIN_OUTPUT),
        # Envoy's inbound listener talking to the app (source 127.0.0.6): never capture.
        _nat("-A", CHAIN_OUTPUT, "-s", INBOUND_PASSTHROUGH_SOURCE, "-o", "lo", "-j", "RETURN"),
    ]
    for match, ident in (("--uid-owner", uid), ("--gid-owner", gid)):
        proxy = ["-m", "owner", match, ident]
        not_proxy = ["-m", "owner", "!", match, ident]
        to_self = ["!", "-d", _LOCALHOST, "-o", "lo"]
        rules += [
            # The proxy dialling this pod's own (non-loopback) address: a
            # request that was routed back to this pod; let it in through the
            # inbound listener so inbound policy applies.
            _nat("-A", CHAIN_OUTPUT, *to_self, *proxy, "-j", CHAIN_IN_REDIRECT),
            # The app talking to itself over lo (localhost or its own pod
            # address): a local call, not mesh traffic.
            _nat("-A", CHAIN_OUTPUT, "-o", "lo", *not_proxy, "-j", "RETURN"),
            # Everything else the proxy sends goes out as is (no loop into itself).
            _nat("-A", CHAIN_OUTPUT, *proxy, "-j", "RETURN"),
        ]
    # Loopback destinations are local calls, never mesh traffic.
    rules.append(_nat("-A", CHAIN_OUTPUT, "-d", _LOCALHOST, "-j", "RETURN"))
    # Destinations the mesh must not intercept (e.g. the control plane).
    for cidr in capture.exclude_outbound_cidrs:
        rules.append(_nat("-A", CHAIN_OUTPUT, "-d", cidr, "-j", "RETURN"))
    # All remaining app traffic goes to the outbound listener.
    rules.append(_nat("-A", CHAIN_OUTPUT, "-j", CHAIN_REDIRECT))
    return rules


def restore_script(rules: Sequence[Sequence[str]]) -> str:
    """Render ``capture_rules`` output as ``iptables-restore`` input (nat table only).

    Restoring replaces the whole nat table of the pod's netns, which makes
    applying the rules idempotent. An empty ``rules`` yields an empty nat table.
    """
    chains: list[str] = []
    lines: list[str] = []
    for argv in rules:
        if list(argv[:3]) != ["iptables", "-t", "nat"] or len(argv) < 5:
            raise ValueError(f"not a nat-table iptables command: {list(argv)}")
        if any(not token or any(c.isspace() for c in token) for token in argv):
            raise ValueError(f"rule tokens must be non-empty without spaces: {list(argv)}")
        op, rest = argv[3], list(argv[4:])
        if op == "-N":
            chains.append(f":{rest[0]} - [0:0]")
        elif op == "-A":
            lines.append(" ".join(["-A", *rest]))
        else:
            raise ValueError(f"unsupported operation {op} in {list(argv)}")
    return "\n".join(["*nat", *chains, *lines, "COMMIT", ""])
