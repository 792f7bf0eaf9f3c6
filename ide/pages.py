"""URL routes of the browser pages (included from ide/urls.py)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sandboxes/<str:sandbox_id>/", views.workspace, name="workspace"),
    path("", include("sandboxes.classroom.urls")),  # the app's pages, by name
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", views.account, name="account"),
    path("accounts/tokens/", views.create_token, name="create_token"),
    path("accounts/tokens/<int:token_id>/revoke/", views.revoke_token, name="revoke_token"),
]
