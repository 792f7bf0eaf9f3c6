"""What the preview layer answers itself: small HTML pages (every value escaped:
jupyter-server-proxy's advisories), WebSocket refusals and redirects."""

from __future__ import annotations

import html

from .scope import Scope, Send

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;
color:#222}}h1{{font-size:1.4em}}code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>{title}</h1><p>{message}</p>{link}<p><small>Sandbox preview</small></p></body></html>
"""

# (href, text) of a link shown under the message.
Link = tuple[str, str]


def page_html(title: str, message: str, link: Link | None = None) -> str:
    shown = ""
    if link is not None:
        href, text = (html.escape(part) for part in link)
        shown = f'<p><a href="{href}">{text}</a></p>'
    return _PAGE.format(title=html.escape(title), message=html.escape(message), link=shown)


async def page(send: Send, status: int, title: str, message: str, link: Link | None = None) -> None:
    body = page_html(title, message, link).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def refuse(scope: Scope, send: Send, status: int, title: str, message: str) -> None:
    """A page for HTTP; for a WebSocket, a close before accepting (4000 + status)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status})
    else:
        await page(send, status, title, message)


async def redirect(send: Send, location: str, cookie: str | None = None) -> None:
    headers = [
        (b"location", location.encode("latin-1")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
    if cookie:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
