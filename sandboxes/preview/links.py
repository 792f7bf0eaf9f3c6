"""Short share links, ``/p/{code}`` on the IDE's origin: a link a person can read
aloud or paste in a chat, which leads to the port's preview URL (whose host then
checks the port's visibility). A link whose sharing expired or was revoked answers
a page that says so, unless the one following it may open the port anyway."""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from sandboxes import callers, ports

from .pages import page_html
from .private import ended_page, may_open

_CODE = re.compile(r"^[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}$")


def _origin(request: HttpRequest) -> ports.Origin:
    try:
        port: int | None = int(request.get_port())
    except (TypeError, ValueError):
        port = None
    return ports.Origin(request.scheme or "http", port)


async def share_link_view(request: HttpRequest, code: str) -> HttpResponse:
    code = code.strip().lower()
    exposed = await ports.find_shared(code) if _CODE.match(code) else None
    if exposed is None:
        return HttpResponse(
            page_html(
                "No such link",
                "This share link does not exist: it was mistyped, or its port was "
                "closed or exposed again (which makes a new link). Ask for a fresh one.",
            ),
            status=404,
        )
    ended = ports.ended(exposed)
    if ended:
        user = await callers.session_user(request)
        if not user.is_authenticated or not await may_open(
            user.pk, exposed, ports.visibility(exposed)
        ):
            return HttpResponse(page_html(*ended_page(ended)), status=410)
    response = HttpResponseRedirect(ports.preview_url(exposed, _origin(request)))
    response["Cache-Control"] = "no-store"
    return response
