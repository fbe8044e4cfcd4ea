"""Minimal settings: no database, no templates; the Stem backend's URL comes
from ``STEM_URL``."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
ROOT_URLCONF = "reportsite.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
WSGI_APPLICATION = "reportsite.wsgi.application"

STEM_URL = os.environ.get("STEM_URL", "sqlite:///stem.db")
