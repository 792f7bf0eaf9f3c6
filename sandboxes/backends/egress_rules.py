"""Firewall rules for one sandbox with an allow-list (or cut off by a PATCH to none).

The bridge-wide rules (``isolation``) keep every sandbox off the host and non-public
ranges. A sandbox whose egress is not ``all`` gets its own chain on top, reached
from DOCKER-USER by its address on the bridge:

    SBXE-<hash>:  -d <allowed CIDR> -j RETURN      (each IPv4 CIDR of its allow-list)
                  -d <name server> --dport 53 -j RETURN   (DNS; not for "none")
                  -j DROP

RETURN hands the packet back to the bridge-wide rules, so an allowed CIDR never
opens a blocked range, whatever order the rules end up in. With an allow-list an
INPUT rule lets the sandbox's address reach the egress proxy on the gateway, and
nothing else on the host. The chain's contents are replaced in one
``iptables-restore --noflush`` transaction, so a change never passes through an
empty (open) chain. Every rule we add carries the chain's name as a comment, which
is how stale ones (the address of a stopped sandbox) are found and removed.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .isolation import FirewallUnavailable, host_nameservers

PREFIX = "SBXE-"
JUMP_CHAINS = ("DOCKER-USER", "INPUT")


@dataclass(frozen=True)
class SandboxRules:
    """What one sandbox's rules say; ``mode`` is "allow" or "none"."""

    chain: str
    bridge: str
    address: str
    gateway: str
    proxy_port: int
    mode: str
    networks: Sequence[str] = ()  # IPv4 CIDRs (the network has no IPv6)


def chain_name(container: str) -> str:
    return PREFIX + hashlib.sha256(container.encode()).hexdigest()[:16]


def _iptables(*args: str, stdin: str | None = None, tool: str = "iptables") -> str:
    result = subprocess.run([tool, *args], input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        why = (result.stderr or result.stdout).strip().splitlines()
        raise FirewallUnavailable(
            f"`{tool} {' '.join(args)}` failed" + (f": {why[0]}" if why else "")
        )
    return result.stdout


def _ours(chain: str) -> list[list[str]]:
    """Our rules in the shared chains that lead to ``chain`` (as ``-D`` argv)."""
    found = []
    for shared in JUMP_CHAINS:
        for line in _iptables("-w", "-S", shared).splitlines():
            words = shlex.split(line)
            if words[:1] == ["-A"] and PREFIX in line and chain in words:
                found.append(["-D", *words[1:]])
    return found


def _chain_body(rules: SandboxRules) -> str:
    lines = [f":{rules.chain} - [0:0]"]
    if rules.mode == "allow":
        lines += [f"-A {rules.chain} -d {cidr} -j RETURN" for cidr in rules.networks]
        for server in host_nameservers():
            for proto in ("udp", "tcp"):
                lines.append(
                    f"-A {rules.chain} -d {server}/32 -p {proto} -m {proto} --dport 53 -j RETURN"
                )
    lines.append(f"-A {rules.chain} -j DROP")
    return "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"


def _jumps(rules: SandboxRules) -> list[tuple[str, list[str]]]:
    source = ["-s", f"{rules.address}/32", "-i", rules.bridge]
    comment = ["-m", "comment", "--comment", rules.chain]
    jumps = [("DOCKER-USER", [*source, *comment, "-j", rules.chain])]
    if rules.mode == "allow":
        jumps.append(
            (
                "INPUT",
                [
                    *source,
                    "-d",
                    f"{rules.gateway}/32",
                    "-p",
                    "tcp",
                    "-m",
                    "tcp",
                    "--dport",
                    str(rules.proxy_port),
                    *comment,
                    "-j",
                    "ACCEPT",
                ],
            )
        )
    return jumps


def install(rules: SandboxRules) -> None:
    """Give the sandbox at ``rules.address`` exactly these rules (idempotent)."""
    forget_address(rules.address, keep=rules.chain)
    _iptables("-w", "--noflush", stdin=_chain_body(rules), tool="iptables-restore")
    wanted = _jumps(rules)
    for chain, rule in wanted:
        if subprocess.run(["iptables", "-w", "-C", chain, *rule], capture_output=True).returncode:
            _iptables("-w", "-I", chain, "1", *rule)
    # the sandbox's earlier address, or the proxy rule of an allow-list it no longer has
    for delete in _ours(rules.chain):
        if not _same(delete[1], delete[2:], wanted):
            _iptables("-w", *delete)


def _same(chain: str, rule: list[str], wanted: list[tuple[str, list[str]]]) -> bool:
    """iptables prints a rule in its own order: compare as sets of words."""
    return any(chain == c and sorted(rule) == sorted(r) for c, r in wanted)


def forget_address(address: str, keep: str = "") -> None:
    """Remove our rules for ``address`` that belong to another chain than ``keep``
    (a sandbox that stopped without telling us, whose address is reused)."""
    _delete(lambda words: f"{address}/32" in words and not (keep and keep in words))


def clear(address: str, chain: str) -> None:
    """Back to the bridge-wide rules alone for ``address`` (egress "all"): our rules
    for that address or leading to ``chain`` go, then the chain itself."""
    listing = _listing()
    _delete(lambda words: f"{address}/32" in words or chain in words, listing)
    _drop_chain(chain, listing)


def release(chain: str) -> None:
    """Remove the sandbox's chain and every rule that leads to it (repeatable)."""
    listing = _listing()
    _delete(lambda words: chain in words, listing)
    _drop_chain(chain, listing)


def _listing() -> list[str]:
    """The filter table in one ``iptables -S`` run: every wake and every stop clears
    or releases a sandbox's rules, and each run of iptables costs milliseconds.
    A shared chain that is missing fails as listing it on its own would."""
    lines = _iptables("-w", "-S").splitlines()
    for shared in JUMP_CHAINS:
        if f"-N {shared}" not in lines and not any(
            line.startswith(f"-P {shared} ") for line in lines
        ):
            raise FirewallUnavailable(f"`iptables -w -S {shared}` failed: no such chain")
    return lines


def _delete(match: Callable[[list[str]], bool], listing: list[str] | None = None) -> None:
    """Delete our rules (those carrying an SBXE- comment) in the shared chains that
    ``match`` picks, from one listing of the table (``listing``, or a new one)."""
    lines = _listing() if listing is None else listing
    for shared in JUMP_CHAINS:
        for line in lines:
            if not line.startswith(f"-A {shared} ") or PREFIX not in line:
                continue
            words = shlex.split(line)
            if match(words):
                # one gone already (removed by another server process) is fine
                subprocess.run(["iptables", "-w", "-D", *words[1:]], capture_output=True)


def _drop_chain(chain: str, listing: list[str]) -> None:
    if f"-N {chain}" in listing:
        _iptables("-w", "-F", chain)
        _iptables("-w", "-X", chain)


def release_bridge(bridge: str) -> None:
    """Remove every sandbox chain reached from ``bridge`` (the network is deleted)."""
    chains = set()
    for shared in JUMP_CHAINS:
        try:
            listing = _iptables("-w", "-S", shared)
        except FirewallUnavailable:
            return
        for line in listing.splitlines():
            words = shlex.split(line)
            if words[:1] == ["-A"] and bridge in words and "--comment" in words:
                name = words[words.index("--comment") + 1]
                if name.startswith(PREFIX):
                    chains.add(name)
    for chain in chains:
        release(chain)
