"""The operations dashboard: ``stem dashboard --url URL`` (install
``trio-stem[dashboard]``). See docs/dashboard.md."""

from ._app import create_app as create_app
from ._auth import DashboardAuth as DashboardAuth
from ._server import serve as serve

__all__ = ["DashboardAuth", "create_app", "serve"]
