"""What an egress setting is, how entries are checked, and what they allow.

``egress`` is ``"all"`` (the public internet), ``"none"`` (no network) or
``{"allow": [...]}``: entries are CIDRs (IPv4 or IPv6, a bare address counting as
one host) or host names, where a leading ``*.`` matches every name below (not the
name itself). A tenant can never open more than the public internet: CIDRs that
touch a range the firewall keeps sandboxes away from (private, loopback,
link-local with the metadata address, CGNAT, reserved) are refused, and the proxy
refuses a name that resolves into one (``forbidden_address``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from django.conf import settings

from sandboxes.backends.isolation import BLOCKED_RANGES
from sandboxes.errors import BadRequest

MAX_ENTRIES = 64
Mode = Literal["all", "none", "allow"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_BLOCKED = tuple(ipaddress.ip_network(cidr) for cidr in BLOCKED_RANGES)


class HasAllow(Protocol):
    """The API's ``{"allow": [...]}`` object."""

    allow: list[str]


EgressValue = str | HasAllow | Mapping[str, list[str]]


@dataclass(frozen=True)
class Egress:
    """A sandbox's egress setting, as stored (``mode`` and the entries)."""

    mode: Mode = "all"
    allow: tuple[str, ...] = ()

    @classmethod
    def of(cls, value: EgressValue | None) -> Egress:
        """From the API's form; entries are checked (400s naming the entry)."""
        if value is None or value == "all":
            return cls("all")
        if value == "none":
            return cls("none")
        allow = value.get("allow") if isinstance(value, Mapping) else getattr(value, "allow", None)
        if isinstance(value, str) or not isinstance(allow, list):
            raise BadRequest(
                f'egress must be "all", "none" or {{"allow": [...]}}, not {value!r}.',
                code="invalid_egress",
            )
        return cls("allow", tuple(check_entries(allow)))

    @classmethod
    def stored(cls, mode: str, allow: Iterable[str]) -> Egress:
        return (
            cls("allow", tuple(allow))
            if mode == "allow"
            else cls("none" if mode == "none" else "all")
        )

    def to_api(self) -> str | dict[str, list[str]]:
        return {"allow": list(self.allow)} if self.mode == "allow" else self.mode

    def networks(self) -> list[Network]:
        return [n for n in (as_network(e) for e in self.allow) if n is not None]

    def permits_name(self, host: str) -> bool:
        """Is this host name (not an address) on the allow-list?"""
        if self.mode == "all":
            return True
        if self.mode == "none":
            return False
        name = host.lower().rstrip(".")
        for entry in self.allow:
            if entry.startswith("*."):
                if name.endswith(entry[1:]) and len(name) > len(entry) - 1:
                    return True
            elif entry == name:
                return True
        return False

    def permits_address(self, address: Address) -> bool:
        """May the sandbox reach this address (already known not to be forbidden)?"""
        if self.mode == "all":
            return True
        if self.mode == "none":
            return False
        return any(address in network for network in self.networks())


def as_network(entry: str) -> Network | None:
    """The entry as a network, or None when it is a host name."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _refuse(entry: str, why: str, code: str = "invalid_egress") -> BadRequest:
    return BadRequest(f"egress.allow entry {entry!r}: {why}", code=code)


def check_entry(raw: str) -> str:
    """One entry, lower-cased; raise 400 ``invalid_egress`` or ``egress_forbidden``."""
    entry = raw.strip().lower()
    if not entry or len(entry) > 253:
        raise _refuse(raw, "give a CIDR or a host name of 1 to 253 characters.")
    if "/" in entry or ":" in entry or _looks_ipv4(entry):
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise _refuse(raw, f"not a valid CIDR ({exc}).") from None
        touched = blocked_overlap(network)
        if touched:
            raise _refuse(
                raw,
                f"overlaps {touched}, a range sandboxes may never reach (the host, private "
                "networks, cloud metadata, other sandboxes); only public addresses can be "
                "allowed.",
                code="egress_forbidden",
            )
        return entry
    name = entry[2:] if entry.startswith("*.") else entry
    labels = name.rstrip(".").split(".")
    if not valid_name(name):
        raise _refuse(
            raw,
            "not a CIDR or a host name (letters, digits and hyphens in dot-separated "
            "labels, optionally starting with `*.`; international names in their xn-- form).",
        )
    if labels[-1].isdigit():
        raise _refuse(raw, "a host name's last label cannot be all digits.")
    return ("*." if entry.startswith("*.") else "") + ".".join(labels)


def valid_name(name: str) -> bool:
    """A host name in ASCII: dot-separated labels of letters, digits and hyphens."""
    return all(_LABEL.match(label) for label in name.rstrip(".").split("."))


def _looks_ipv4(entry: str) -> bool:
    return all(part.isdigit() for part in entry.split("."))


def check_entries(entries: Sequence[str]) -> list[str]:
    if len(entries) > MAX_ENTRIES:
        raise BadRequest(
            f"egress.allow has {len(entries)} entries; at most {MAX_ENTRIES} are allowed.",
            code="invalid_egress",
        )
    checked: list[str] = []
    for raw in entries:
        entry = check_entry(raw)
        if entry not in checked:
            checked.append(entry)
    return checked


def blocked_overlap(network: Network) -> str:
    """The first forbidden range the network touches ('' if none)."""
    if network.version == 6:
        if network.is_global and not network.overlaps(ipaddress.ip_network("::ffff:0:0/96")):
            return ""
        return "a non-global IPv6 range"
    for blocked in _BLOCKED:
        if isinstance(network, ipaddress.IPv4Network) and network.overlaps(blocked):
            return str(blocked)
    return ""


def forbidden_address(address: Address, extra: Iterable[Network] = ()) -> bool:
    """Addresses no sandbox reaches whatever its allow-list: every blocked range, any
    non-global IPv6, and ``extra`` (the host's own and the sandboxes' networks)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return forbidden_address(mapped, extra)
        if not address.is_global:
            return True
    elif any(address in blocked for blocked in _BLOCKED):
        return True
    return any(address.version == n.version and address in n for n in extra)


def proxy_secret(sandbox_id: str) -> str:
    """The sandbox's proxy password: it proves the sandbox id in the proxy URL, and
    a sandbox can read only its own (it is in its programs' environment)."""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"egress-proxy:{sandbox_id}".encode(), hashlib.sha256).hexdigest()[:40]
