from __future__ import annotations

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("hello/", views.hello),
    path("echo/", views.echo),
    path("admin/", admin.site.urls),
]
