"""nginx from Debian in front of the test servers, run from the shipped configuration.

``deploy/nginx/sandbox-ide.conf.template`` is rendered as its header says (its four
``${...}`` names filled in, nginx's own ``$variables`` left alone) and included in a
minimal main configuration of our own: a temporary directory for the pid file, logs
and temporary files, nginx as a non-daemon child on a free loopback port, stopped
when the block ends. A missing nginx fails the tier with a sentence; it never skips.

The one thing the tests add is a response header, ``X-Upstream``, naming the process
that answered, so a test can tell which one served its request or WebSocket.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.server import ROOT, free_port

TEMPLATE = ROOT / "deploy" / "nginx" / "sandbox-ide.conf.template"
NGINX = "/usr/sbin/nginx"
_NAME = re.compile(r"\$\{([A-Z_]+)\}")

MAIN = """\
daemon off;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/sandbox-ide.conf;
    access_log {root}/access.log sandbox_ide;
    add_header X-Upstream $upstream_addr always;
}}
"""


def render(values: dict[str, str]) -> str:
    """The template with its ``${NAME}``s replaced, as ``envsubst`` with their list does;
    a name the template uses but ``values`` lacks is an error, not an empty string."""
    text = TEMPLATE.read_text()
    missing = sorted(set(_NAME.findall(text)) - values.keys())
    if missing:
        raise KeyError(f"the nginx template needs {', '.join(missing)}")
    return _NAME.sub(lambda match: values[match.group(1)], text)


@dataclass
class Nginx:
    url: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]

    def error_log(self) -> str:
        return (self.root / "error.log").read_text(errors="replace")


def served_by(headers: Mapping[str, str]) -> str:
    """The process (host:port) that answered, from the test-only ``X-Upstream`` header
    (of an HTTP response or a WebSocket handshake); after nginx moved on from a lost
    process it names both, and the last one answered."""
    return headers["x-upstream"].split(",")[-1].strip()


@contextmanager
def nginx(upstreams: Sequence[str], preview_domain: str, workers: int = 2) -> Iterator[Nginx]:
    """nginx on a free loopback port, balancing over ``upstreams`` (host:port each)."""
    if not Path(NGINX).exists():
        pytest.fail(
            "nginx is not installed (no /usr/sbin/nginx): run .ci/run, which installs "
            "the Debian package nginx.",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="sbx-nginx-", dir="/tmp"))
    root.chmod(0o755)
    port = free_port()
    site = render(
        {
            "SANDBOX_IDE_LISTEN": f"127.0.0.1:{port}",
            "SANDBOX_IDE_SERVER_NAME": "localhost 127.0.0.1",
            "PREVIEW_DOMAIN": preview_domain,
            "SANDBOX_IDE_UPSTREAMS": " ".join(f"server {address};" for address in upstreams),
        }
    )
    (root / "sandbox-ide.conf").write_text(site)
    (root / "nginx.conf").write_text(MAIN.format(root=root, workers=workers))
    command = [
        NGINX,
        "-p",
        str(root),
        "-e",
        str(root / "error.log"),
        "-c",
        str(root / "nginx.conf"),
    ]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    if checked.returncode:
        raise RuntimeError(f"nginx rejects the rendered configuration: {checked.stderr}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/api/v1/openapi.json", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"nginx did not start: {(root / 'error.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield Nginx(url=url, port=port, root=root, process=process)
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
