"""Host firewall rules that keep sandboxes off the host and private networks.

Docker's bridge lets a container reach the host (the gateway address answers for
every host service, the server's own port included) and, through forwarding, any
private or link-local address (cloud metadata at 169.254.169.254, other hosts on the
LAN). For the sandboxes' bridge we drop:

- INPUT from the bridge, except replies to connections the host opened;
- forwarded traffic from the bridge to RFC 1918, CGNAT and link-local ranges
  (the public internet stays reachable: egress "all"), except DNS to the host's
  name servers.

Rules are checked before they are added (``iptables -C``) so this is idempotent.
Without iptables or root, sandboxes still run and a warning says what is missing.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

BLOCKED_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
)


def host_nameservers(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    """The DNS servers the engine forwards sandboxes' lookups to (often private)."""
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return []
    servers = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                servers.append(str(address))
    return servers


def _rules(bridge: str) -> list[tuple[str, list[str]]]:
    """In insertion order; each is inserted at the top, so the last comes first."""
    rules = [
        ("INPUT", ["-i", bridge, "-j", "DROP"]),
        (
            "INPUT",
            ["-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ),
    ]
    rules += [("DOCKER-USER", ["-i", bridge, "-d", cidr, "-j", "DROP"]) for cidr in BLOCKED_RANGES]
    # DNS must keep working: the engine's resolver forwards from the sandbox's own
    # network, to the host's name servers, which may sit in a private range.
    for server in host_nameservers():
        for proto in ("udp", "tcp"):
            rules.append(
                (
                    "DOCKER-USER",
                    ["-i", bridge, "-d", server, "-p", proto, "--dport", "53", "-j", "ACCEPT"],
                )
            )
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
