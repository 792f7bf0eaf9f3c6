"""Host firewall rules that keep sandboxes off the host and private networks.

Docker's bridge lets a container reach the host (the gateway address answers for
every host service, the server's own port included) and, through forwarding, any
private or link-local address (cloud metadata at 169.254.169.254, other hosts on the
LAN). For the sandboxes' bridge we drop:

- INPUT from the bridge, except replies to connections the host opened;
- forwarded traffic from the bridge to RFC 1918, CGNAT and link-local ranges
  (the public internet stays reachable: egress "all").

Rules are checked before they are added (``iptables -C``) so this is idempotent.
Without iptables or root, sandboxes still run and a warning says what is missing.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

log = logging.getLogger(__name__)

BLOCKED_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
)


def _rules(bridge: str) -> list[tuple[str, list[str]]]:
    rules = [
        ("INPUT", ["-i", bridge, "-j", "DROP"]),
        (
            "INPUT",
            ["-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ),
    ]
    rules += [("DOCKER-USER", ["-i", bridge, "-d", cidr, "-j", "DROP"]) for cidr in BLOCKED_RANGES]
    return rules


def _iptables(*args: str) -> int:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, check=False).returncode


def isolate_bridge(bridge: str) -> bool:
    if not shutil.which("iptables"):
        log.warning("iptables is missing: sandboxes on %s can reach the host", bridge)
        return False
    ok = True
    for chain, rule in _rules(bridge):
        if _iptables("-C", chain, *rule) == 0:
            continue
        if _iptables("-I", chain, *rule) != 0:
            ok = False
    if not ok:
        log.warning("could not install firewall rules for %s (not root?)", bridge)
    return ok


def release_bridge(bridge: str) -> None:
    """Remove the rules again (when a deployment's network is deleted)."""
    if not shutil.which("iptables"):
        return
    for chain, rule in _rules(bridge):
        while _iptables("-C", chain, *rule) == 0:
            _iptables("-D", chain, *rule)
