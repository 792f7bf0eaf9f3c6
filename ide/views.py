"""The browser pages: accounts, the dashboard and the IDE.

Thin on purpose: the dashboard and the IDE are JavaScript clients of the public
API (static/ide/js/); these views only authenticate and render the shell.
"""

from __future__ import annotations

import math
from typing import Any, cast

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

from sandboxes.models import ApiToken, Sandbox
from sandboxes.policy import invited, may

_NEW_TOKEN_SESSION_KEY = "ide_new_api_token"  # noqa: S105 - a session key name


def _next_url(request: HttpRequest) -> str | None:
    """Where to go after signing up (an invite link), if it is a page of this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


def signup_context(request: HttpRequest) -> dict[str, Any]:
    """Templates show the sign-up links the SIGNUP setting allows (a context processor)."""
    return {"signup_mode": settings.SIGNUP}


def _signup_refused(request: HttpRequest, next_url: str | None) -> HttpResponse | None:
    """SIGNUP=closed: no sign-up page; SIGNUP=invite: only on the way to an invitation
    an app recognises (a course's join page links here with ``next``)."""
    if settings.SIGNUP == "open":
        return None
    if settings.SIGNUP == "invite":
        if next_url and async_to_sync(invited)(next_url):
            return None
        message = (
            "Sign-up on this server is by invitation: open the invite link your "
            "teacher gave you and sign up from there."
        )
        status = 403
    else:
        message = "Sign-up is closed on this server: ask its administrator for an account."
        status = 404
    return render(request, "accounts/signup_closed.html", {"message": message}, status=status)


def signup(request: HttpRequest) -> HttpResponse:
    next_url = _next_url(request)
    if request.user.is_authenticated:
        return redirect(next_url or "dashboard")
    refused = _signup_refused(request, next_url)
    if refused is not None:
        return refused
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if next_url:
            return redirect(next_url)
        messages.success(request, f"Welcome, {user.get_username()}! Create your first sandbox.")
        return redirect("dashboard")
    return render(request, "accounts/signup.html", {"form": form, "next": next_url or ""})


def locked_out(
    request: HttpRequest, response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The login page again, saying why logging in is refused for now (django-axes
    calls this once a username has failed too often from this address)."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    message = (
        f"Too many failed logins for this account from your address: try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}."
    )
    context = {"form": form, "locked_out": message, "next": request.POST.get("next", "")}
    return render(request, "accounts/login.html", context, status=429)


@login_required
def account(request: HttpRequest) -> HttpResponse:
    tokens = ApiToken.objects.filter(user=cast(User, request.user))  # login_required
    new_token = request.session.pop(_NEW_TOKEN_SESSION_KEY, None)
    return render(request, "accounts/account.html", {"tokens": tokens, "new_token": new_token})


@login_required
@require_POST
def create_token(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()[:100]
    row, token = ApiToken.issue(request.user, name)
    # Shown once, on the next page view (post/redirect/get), then forgotten.
    request.session[_NEW_TOKEN_SESSION_KEY] = {"name": row.name, "token": token}
    return redirect("account")


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    row = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    row.delete()
    messages.success(request, f"Token {row.hint}… revoked: programs using it are locked out now.")
    return redirect("account")


@login_required
@ensure_csrf_cookie
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard.html")


@login_required
@ensure_csrf_cookie
def workspace(request: HttpRequest, sandbox_id: str) -> HttpResponse:
    """The IDE; read-only for someone who may only look (a teacher, a classmate)."""
    sandbox = Sandbox.objects.filter(id=sandbox_id).select_related("owner").first()
    if sandbox is None:
        raise Http404("No such sandbox.")
    readonly = sandbox.owner_id != request.user.pk
    if readonly and not async_to_sync(may)(request.user, "view", sandbox):
        raise Http404("No such sandbox.")
    return render(request, "ide.html", {"sandbox": sandbox, "readonly": readonly})
