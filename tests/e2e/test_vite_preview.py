"""A real Vite dev server, with hot module replacement, through a preview URL.

Vite is installed from the npm registry inside the sandbox; npm is given this
machine's CA bundle, so it works behind a TLS-intercepting proxy as well.
"""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Browser

from tests.e2e.conftest import new_context

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def test_vite_hot_reload_through_the_preview(browser: Browser, server) -> None:  # type: ignore[no-untyped-def]
    with server.client("vite") as api:
        sid = api.post("/sandboxes", json={"name": "vite", "keep_alive": True}).json()["id"]
        if HOST_CA.exists():
            api.put(
                f"/sandboxes/{sid}/files/content",
                params={"path": "/home/sandbox/host-ca.crt"},
                content=HOST_CA.read_bytes(),
            ).raise_for_status()
            api.post(
                f"/sandboxes/{sid}/exec",
                json={"command": "npm config set cafile /home/sandbox/host-ca.crt"},
            )
        made = api.post(
            f"/sandboxes/{sid}/exec",
            json={
                "command": "npm create -y vite@5 app -- --template vanilla && "
                "cd app && npm install --no-audit --no-fund",
                "timeout": 600,
            },
            timeout=660,
        ).json()
        assert made["exit_code"] == 0, made["stdout"][-2000:] + made["stderr"][-2000:]
        started = api.post(
            f"/sandboxes/{sid}/processes",
            json={"command": "npx vite --host 127.0.0.1 --port 5173 --strictPort", "cwd": "app"},
        ).json()
        waited = api.post(
            f"/sandboxes/{sid}/processes/{started['pid']}/wait-for-port",
            json={"port": 5173, "timeout": 120},
        )
        assert waited.status_code == 200, waited.text
        url = api.post(f"/sandboxes/{sid}/ports", json={"port": 5173}).json()["url"]

        context = new_context(browser, server.url)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(url)
        page.wait_for_selector("#app h1")
        assert page.inner_text("#app h1") == "Hello Vite!"
        page.evaluate("window.__notReloaded = true")
        color = "getComputedStyle(document.querySelector('#app h1')).color"
        before = page.evaluate(color)
        api.post(
            f"/sandboxes/{sid}/exec",
            json={
                "command": "sed -i 's/^h1 {/h1 { color: rgb(255, 0, 0);/' style.css",
                "cwd": "app",
            },
        )
        deadline = time.monotonic() + 30
        while page.evaluate(color) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert page.evaluate(color) == "rgb(255, 0, 0)"
        assert page.evaluate("window.__notReloaded") is True  # hot update, not a reload
        assert any("[vite] hot updated: /style.css" in line for line in console), console
        context.close()
        api.delete(f"/sandboxes/{sid}")
