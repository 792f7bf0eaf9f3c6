"""Host firewall rules that keep sandboxes off the host and private networks.

Docker's bridge lets a container reach the host (the gateway address answers for
every host service, the server's own port included) and, through forwarding, any
private or link-local address (cloud metadata at 169.254.169.254, other hosts on the
LAN). For the sandboxes' bridge we drop:

- INPUT from the bridge, except replies to connections the host opened;
- forwarded traffic from the bridge to every range that is not the public internet
  (``BLOCKED_RANGES``: private, CGNAT, loopback, link-local, benchmarking, reserved
  and multicast), except DNS to the host's name servers;
- all IPv6 from the bridge (INPUT and FORWARD, with ip6tables), and IPv6 is switched
  off on the bridge itself: the network is made without IPv6.

Rules are checked before they are added (``iptables -C``) so this is idempotent.
The firewall fails closed: when the rules cannot be installed (no iptables on the
PATH, not root) ``isolate_bridge`` raises ``FirewallUnavailable`` and the backend
gives the sandbox no network instead of an unguarded one.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

# Destinations a sandbox never reaches through the bridge (IPv4; IPv6 is dropped whole).
BLOCKED_RANGES = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # carrier-grade NAT (also some clouds' internal services)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local: cloud metadata services
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and broadcast
)

Rule = tuple[str, list[str]]


class FirewallUnavailable(Exception):
    """The rules could not be installed; the message says why, for the API and logs."""


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


def _rules(bridge: str) -> list[Rule]:
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


def _rules6(bridge: str) -> list[Rule]:
    """No IPv6 at all from the bridge: not to the host, not forwarded, not between
    sandboxes (bridged frames pass FORWARD when br_netfilter is loaded)."""
    return [("INPUT", ["-i", bridge, "-j", "DROP"]), ("FORWARD", ["-i", bridge, "-j", "DROP"])]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "-w", *args], capture_output=True, text=True, check=False)


def _install(tool: str, rules: list[Rule]) -> None:
    """Add the missing rules; raise FirewallUnavailable with the tool's own words."""
    if not shutil.which(tool):
        raise FirewallUnavailable(f"{tool} is not installed or not on the server's PATH")
    for chain, rule in rules:
        if _run(tool, "-C", chain, *rule).returncode == 0:
            continue
        result = _run(tool, "-I", chain, *rule)
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip().splitlines()
            raise FirewallUnavailable(
                f"`{tool} -I {chain} {' '.join(rule)}` failed"
                + (f": {why[0]}" if why else "")
                + " (the server must run as root)"
            )


def disable_bridge_ipv6(bridge: str) -> bool:
    """Switch IPv6 off on the host's side of the bridge; True if it is off now (or
    the kernel has no IPv6)."""
    if not Path("/proc/sys/net/ipv6").exists():
        return True
    path = Path("/proc/sys/net/ipv6/conf") / bridge / "disable_ipv6"
    try:
        if path.read_text().strip() != "1":
            path.write_text("1")
        return path.read_text().strip() == "1"
    except OSError:
        return False


def isolate_bridge(bridge: str, network_ipv6: bool = False) -> None:
    """Install the rules for ``bridge`` or raise FirewallUnavailable.

    IPv6 counts as covered when ip6tables drops it, or when neither the network
    (``network_ipv6``: Docker's EnableIPv6) nor the host's end of the bridge has any.
    """
    _install("iptables", _rules(bridge))
    ipv6_off = disable_bridge_ipv6(bridge) and not network_ipv6
    try:
        _install("ip6tables", _rules6(bridge))
    except FirewallUnavailable as exc:
        if not ipv6_off:
            raise FirewallUnavailable(f"{exc}, and the sandboxes' network has IPv6") from None


def release_bridge(bridge: str) -> None:
    """Remove the rules again (when a deployment's network is deleted)."""
    for tool, rules in (("iptables", _rules(bridge)), ("ip6tables", _rules6(bridge))):
        if not shutil.which(tool):
            continue
        for chain, rule in rules:
            while _run(tool, "-C", chain, *rule).returncode == 0:
                if _run(tool, "-D", chain, *rule).returncode != 0:
                    break
