"""Browser pages of the classroom: course list, a course (teacher's or student's
view) and the invite landing page. Like the dashboard they render a shell; the
page's script (static/ide/js/courses.js) is a client of the public API. Routed by
``sandboxes/classroom/urls.py``, which ide/pages.py includes.
"""

from __future__ import annotations

from typing import cast

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from sandboxes.classroom import services as classroom
from sandboxes.classroom.models import Enrollment
from sandboxes.errors import SandboxError


@login_required
@ensure_csrf_cookie
def courses(request: HttpRequest) -> HttpResponse:
    return render(request, "courses/list.html")


@login_required
@ensure_csrf_cookie
def course(request: HttpRequest, course_id: str) -> HttpResponse:
    user = cast(User, request.user)  # login_required
    try:
        found = async_to_sync(classroom.get_course)(user, course_id)
    except SandboxError as exc:
        return render(request, "courses/missing.html", {"message": exc.message}, status=exc.status)
    role = "teacher" if found.teacher_id == user.pk else "student"
    mine = None
    if role == "student":
        mine = Enrollment.objects.filter(course=found, student=user).first()
    return render(
        request, "courses/course.html", {"course": found, "role": role, "enrollment": mine}
    )


@ensure_csrf_cookie
def join(request: HttpRequest, token: str) -> HttpResponse:
    """The invite link. Anyone may open it; joining needs an account (sign up or log
    in and come back here)."""
    try:
        invite = async_to_sync(classroom.find_invite)(token)
    except SandboxError as exc:
        return render(request, "courses/missing.html", {"message": exc.message}, status=exc.status)
    joined = None
    if request.user.is_authenticated:
        joined = Enrollment.objects.filter(course=invite.course, student=request.user).first()
    return render(
        request,
        "courses/join.html",
        {"invite": invite, "course": invite.course, "joined": joined, "next": request.path},
    )
