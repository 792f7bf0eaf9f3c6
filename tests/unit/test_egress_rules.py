"""Clearing and releasing a sandbox's firewall rules, against a recorded iptables:
each wake and each stop does one of them, so the table is listed once, not per chain."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from sandboxes.backends import egress_rules
from sandboxes.backends.isolation import FirewallUnavailable

CHAIN = egress_rules.chain_name("sbx-box")
OTHER = egress_rules.chain_name("sbx-other")
TABLE = f"""-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER-USER
-N {CHAIN}
-N {OTHER}
-A INPUT -s 172.30.0.5/32 -i br-x -d 172.30.0.1/32 -p tcp -m tcp --dport 3128 \
-m comment --comment {CHAIN} -j ACCEPT
-A DOCKER-USER -s 172.30.0.5/32 -i br-x -m comment --comment {CHAIN} -j {CHAIN}
-A DOCKER-USER -s 172.30.0.9/32 -i br-x -m comment --comment {OTHER} -j {OTHER}
-A DOCKER-USER -j RETURN
-A {CHAIN} -j DROP
-A {OTHER} -j DROP
"""


@pytest.fixture
def iptables(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        listing = args[1:] == ["-w", "-S"]
        return subprocess.CompletedProcess(args, 0, TABLE if listing else "", "")

    monkeypatch.setattr(egress_rules.subprocess, "run", run)
    return calls


def test_release_lists_the_table_once_and_removes_the_chain_and_its_jumps(
    iptables: list[list[str]],
) -> None:
    egress_rules.release(CHAIN)
    assert [c for c in iptables if "-S" in c] == [["iptables", "-w", "-S"]]
    deleted = [c[3:] for c in iptables if c[2] == "-D"]
    assert [d[0] for d in deleted] == ["DOCKER-USER", "INPUT"]
    assert all(CHAIN in d for d in deleted)
    assert ["iptables", "-w", "-F", CHAIN] in iptables
    assert ["iptables", "-w", "-X", CHAIN] in iptables
    assert not any(OTHER in c for c in iptables)


def test_clear_also_removes_another_chains_rules_for_the_address(
    iptables: list[list[str]],
) -> None:
    egress_rules.clear("172.30.0.9", CHAIN)
    assert [c for c in iptables if "-S" in c] == [["iptables", "-w", "-S"]]
    deleted = [c for c in iptables if c[2] == "-D"]
    assert len(deleted) == 3  # the address's jump to OTHER, and both rules of CHAIN
    assert ["iptables", "-w", "-X", OTHER] not in iptables


def test_a_missing_shared_chain_fails_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, "-P INPUT ACCEPT\n", "")

    monkeypatch.setattr(egress_rules.subprocess, "run", run)
    with pytest.raises(FirewallUnavailable, match="DOCKER-USER"):
        egress_rules.release(CHAIN)
