"""Browser pages of the classroom: course list, a course (teacher's or student's
view) and the invite landing page. Like the dashboard they render a shell; the
page's script (static/ide/js/courses.js) is a client of the public API.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
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
    try:
        found = async_to_sync(classroom.get_course)(request.user, course_id)
    except SandboxError as exc:
        return render(request, "courses/missing.html", {"message": exc.message}, status=exc.status)
    role = "teacher" if found.teacher_id == request.user.pk else "student"
    mine = None
    if role == "student":
        mine = Enrollment.objects.filter(course=found, student=request.user).first()
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
