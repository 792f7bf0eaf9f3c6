"""The classroom's browser pages (included by ide/pages.py)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("courses/", views.courses, name="courses"),
    path("courses/<str:course_id>/", views.course, name="course"),
    path("join/<str:token>/", views.join, name="join"),
]
