"""Allow-list entries, what they match, and the server name in a ClientHello."""

from __future__ import annotations

import ipaddress
import ssl

import pytest

from sandboxes.egress import tls
from sandboxes.egress.policy import Egress, check_entries, forbidden_address
from sandboxes.errors import BadRequest


def client_hello(server_hostname: str | None) -> bytes:
    """The first record a real TLS client sends."""
    outgoing = ssl.MemoryBIO()
    context = ssl.create_default_context()
    context.check_hostname = server_hostname is not None
    if server_hostname is None:
        context.verify_mode = ssl.CERT_NONE
    hello = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    return outgoing.read()


def test_entries_are_normalised_and_deduplicated() -> None:
    assert check_entries(["Example.ORG.", "*.example.org", "example.org", "203.0.113.7"]) == [
        "example.org",
        "*.example.org",
        "203.0.113.7",
    ]


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        ("", "invalid_egress"),
        ("a_b.example", "invalid_egress"),
        ("*.*.example", "invalid_egress"),
        ("example.123", "invalid_egress"),
        ("bücher.example", "invalid_egress"),
        ("1.2.3.4/33", "invalid_egress"),
        ("127.0.0.1", "egress_forbidden"),
        ("172.17.0.0/16", "egress_forbidden"),
        ("100.64.0.1", "egress_forbidden"),
        ("8.0.0.0/4", "egress_forbidden"),  # wide enough to take in 10/8
        ("::ffff:10.0.0.1", "egress_forbidden"),
        ("fe80::/10", "egress_forbidden"),
    ],
)
def test_bad_entries_are_refused_by_name(entry: str, code: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_entries([entry])
    assert refused.value.code == code and repr(entry) in refused.value.message


def test_wildcards_match_names_below_only() -> None:
    egress = Egress.of({"allow": ["*.example.org", "pypi.org", "203.0.113.0/24"]})
    assert egress.permits_name("files.example.org") and egress.permits_name("a.b.example.org")
    assert not egress.permits_name("example.org")
    assert not egress.permits_name("badexample.org")
    assert egress.permits_name("PyPI.org.") and not egress.permits_name("evil-pypi.org")
    assert egress.permits_address(ipaddress.ip_address("203.0.113.9"))
    assert not egress.permits_address(ipaddress.ip_address("198.51.100.9"))
    assert Egress.of("all").permits_name("anything") and not Egress.of("none").permits_name("x")


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "10.1.2.3", "172.17.0.1", "::1", "fd00::1", "::ffff:169.254.169.254"],
)
def test_forbidden_addresses(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address))


def test_public_addresses_are_not_forbidden_unless_named() -> None:
    public = ipaddress.ip_address("203.0.113.9")
    assert not forbidden_address(public)
    assert forbidden_address(public, [ipaddress.ip_network("203.0.113.0/24")])


def test_the_server_name_is_read_from_a_real_client_hello() -> None:
    record = client_hello("Files.Example.org")
    body = record[5 : 5 + tls.record_length(record[:5])]
    assert tls.server_name(body) == "files.example.org"
    record = client_hello(None)
    assert tls.server_name(record[5 : 5 + tls.record_length(record[:5])]) is None


def test_what_is_not_a_client_hello_is_refused() -> None:
    with pytest.raises(tls.NotAClientHello):
        tls.record_length(b"GET /")
    record = client_hello("example.org")
    body = record[5 : 5 + tls.record_length(record[:5])]
    with pytest.raises(tls.NotAClientHello):
        tls.server_name(body[:60])
    with pytest.raises(tls.NotAClientHello):
        tls.server_name(b"\x02" + body[1:])
