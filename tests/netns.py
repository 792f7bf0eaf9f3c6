"""A far end for network tests: a namespace on this machine that answers on
addresses the host routes into it, so sandboxes' traffic to "outside" addresses
never leaves the machine.

The addresses come from the documentation ranges (TEST-NET-2 and -3), which the
sandboxes' firewall treats as public; each use picks random ones, so tests running
at the same time on the same host do not collide. Everything is removed on exit,
failures included.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# TLS ClientHellos get "TLS-OK" back (they got through); HTTP requests get
# "hello <address it was reached at> host=<Host header>", or /bytes/N that many bytes.
FAR_END = r"""
import socketserver, sys

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        data = self.request.recv(65536)
        if data[:1] == b"\x16":
            self.request.sendall(b"TLS-OK")
            return
        while b"\r\n\r\n" not in data:
            more = self.request.recv(65536)
            if not more:
                return
            data += more
        lines = data.decode("latin-1").split("\r\n")
        host = ""
        for line in lines[1:]:
            if line.lower().startswith("host:"):
                host = line[5:].strip()
        path = lines[0].split(" ")[1]
        if path.startswith("/bytes/"):
            size = int(path[7:])
            self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            chunk = b"x" * 65536
            while size > 0:
                self.request.sendall(chunk[:size])
                size -= len(chunk)
            return
        body = f"hello {self.request.getsockname()[0]} host={host}\n".encode()
        self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
server = socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
"""


@dataclass
class FarEnd:
    first_ip: str  # in 203.0.113.0/24
    second_ip: str  # in 198.51.100.0/24
    port: int


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@contextmanager
def far_end() -> Iterator[FarEnd]:
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"sbxfar-{tag}", f"fah{tag}", f"fan{tag}"
    link = f"198.18.{2 + secrets.randbelow(250)}"
    ends = FarEnd(
        first_ip=f"203.0.113.{2 + secrets.randbelow(250)}",
        second_ip=f"198.51.100.{2 + secrets.randbelow(250)}",
        port=18000 + secrets.randbelow(1000),
    )
    sh("ip", "netns", "add", ns)
    listener = None
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"{link}.1/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        inside = ["ip", "netns", "exec", ns]
        sh(*inside, "ip", "addr", "add", f"{link}.2/30", "dev", ns_if)
        sh(*inside, "ip", "link", "set", ns_if, "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "ip", "route", "add", "default", "via", f"{link}.1")
        for address in (ends.first_ip, ends.second_ip):
            sh(*inside, "ip", "addr", "add", f"{address}/32", "dev", "lo")
            sh("ip", "route", "add", f"{address}/32", "via", f"{link}.2", "dev", host_if)
            # never a real host: the route must lead into the namespace
            assert f"dev {host_if}" in sh("ip", "route", "get", address)
        listener = subprocess.Popen(
            [*inside, sys.executable, "-c", FAR_END, str(ends.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield ends
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        # deleting the link removes its routes; the namespace takes the other end
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
