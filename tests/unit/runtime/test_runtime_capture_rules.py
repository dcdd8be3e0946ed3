from __future__ import annotations

import pytest

from pilotfish.runtime.network import CaptureConfig, capture_rules
from pilotfish.runtime.network.capture import restore_script


def _ops(rules: list[list[str]]) -> list[str]:
    """Rules as iptables-save style lines without the ``iptables -t nat`` head."""
    for rule in rules:
        assert rule[:3] == ["iptables", "-t", "nat"]
    return [" ".join(rule[3:]) for rule in rules]


def test_default_rule_set_matches_istio_order() -> None:
    assert _ops(capture_rules(CaptureConfig())) == [
        "-N PF_INBOUND",
        "-N PF_REDIRECT",
        "-N PF_IN_REDIRECT",
        "-N PF_OUTPUT",
        "-A PF_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A PF_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A PREROUTING -p tcp -j PF_INBOUND",
        "-A PF_INBOUND -p tcp --dport 15001 -j RETURN",
        "-A PF_INBOUND -p tcp --dport 15006 -j RETURN",
        "-A PF_INBOUND -p tcp --dport 15020 -j RETURN",
        "-A PF_INBOUND -p tcp --dport 15021 -j RETURN",
        "-A PF_INBOUND -p tcp --dport 15090 -j RETURN",
        "-A PF_INBOUND -p tcp -j PF_IN_REDIRECT",
        "-A OUTPUT -p tcp -j PF_OUTPUT",
        "-A PF_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
        "-A PF_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j PF_IN_REDIRECT",
        "-A PF_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
        "-A PF_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A PF_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j PF_IN_REDIRECT",
        "-A PF_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
        "-A PF_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A PF_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A PF_OUTPUT -j PF_REDIRECT",
    ]


def test_custom_ports_ids_and_exclusions() -> None:
    capture = CaptureConfig(
        outbound_port=16001,
        inbound_port=16006,
        proxy_uid=2000,
        proxy_gid=2001,
        exclude_inbound_ports=(22, 16006),
        exclude_outbound_cidrs=("10.0.0.0/8", "192.0.2.7/32"),
    )
    ops = _ops(capture_rules(capture))
    assert "-A PF_REDIRECT -p tcp -j REDIRECT --to-ports 16001" in ops
    assert "-A PF_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006" in ops
    inbound_returns = [op for op in ops if op.startswith("-A PF_INBOUND") and "RETURN" in op]
    # Each excluded port once, capture ports first; nothing of the default list.
    assert inbound_returns == [
        "-A PF_INBOUND -p tcp --dport 16001 -j RETURN",
        "-A PF_INBOUND -p tcp --dport 16006 -j RETURN",
        "-A PF_INBOUND -p tcp --dport 22 -j RETURN",
    ]
    assert not any("1337" in op for op in ops)
    assert any("--uid-owner 2000" in op for op in ops)
    assert any("--gid-owner 2001" in op for op in ops)
    # Excluded destinations come after the loopback RETURN and before the final redirect.
    tail = ops[-4:]
    assert tail == [
        "-A PF_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A PF_OUTPUT -d 10.0.0.0/8 -j RETURN",
        "-A PF_OUTPUT -d 192.0.2.7/32 -j RETURN",
        "-A PF_OUTPUT -j PF_REDIRECT",
    ]


def test_catch_all_rules_come_after_every_exception() -> None:
    ops = _ops(capture_rules(CaptureConfig(exclude_outbound_cidrs=("10.0.0.0/8",))))
    inbound = [op for op in ops if op.startswith("-A PF_INBOUND")]
    assert inbound[-1] == "-A PF_INBOUND -p tcp -j PF_IN_REDIRECT"
    output = [op for op in ops if op.startswith("-A PF_OUTPUT")]
    assert output[-1] == "-A PF_OUTPUT -j PF_REDIRECT"
    # The proxy's self-call special case must precede the proxy's blanket RETURN,
    # or it would never match.
    special = output.index(
        "-A PF_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j PF_IN_REDIRECT"
    )
    assert special < output.index("-A PF_OUTPUT -m owner --uid-owner 1337 -j RETURN")
    # Chains exist before anything jumps to them.
    first_append = next(i for i, op in enumerate(ops) if op.startswith("-A"))
    assert all(op.startswith("-N") for op in ops[:first_append])


def test_restore_script_renders_one_atomic_nat_table() -> None:
    script = restore_script(capture_rules(CaptureConfig()))
    lines = script.splitlines()
    assert lines[0] == "*nat"
    assert lines[-1] == "COMMIT"
    assert ":PF_OUTPUT - [0:0]" in lines
    assert "-A PF_OUTPUT -j PF_REDIRECT" in lines
    assert sum(line.startswith("-A ") for line in lines) == 19
    assert restore_script([]) == "*nat\nCOMMIT\n"


@pytest.mark.parametrize(
    "bad",
    [
        ["iptables", "-t", "filter", "-A", "OUTPUT", "-j", "ACCEPT"],
        ["iptables", "-t", "nat", "-I", "OUTPUT", "-j", "RETURN"],
        ["iptables", "-t", "nat", "-A", "OUTPUT", "-m", "comment", "--comment", "two words"],
    ],
)
def test_restore_script_rejects_what_it_cannot_render(bad: list[str]) -> None:
    with pytest.raises(ValueError):
        restore_script([bad])
