from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("reports/", views.create_report),
    path("reports/<str:task_id>/", views.read_report),
]
