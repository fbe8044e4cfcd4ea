"""The process's one Stem client. It connects on first use, is safe to call
from every request thread, reconnects in each forked server process and
closes at exit."""

from __future__ import annotations

from django.conf import settings

import stem

from .tasks import app

client = stem.BlockingClient(settings.STEM_URL, app=app)
