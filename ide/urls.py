from django.contrib import admin
from django.urls import include, path

from sandboxes.api import api
from sandboxes.preview import preview_auth_view, share_link_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("preview-auth/", preview_auth_view, name="preview-auth"),
    path("p/<str:code>", share_link_view, name="share-link"),
    path("", include("ide.pages")),
]
