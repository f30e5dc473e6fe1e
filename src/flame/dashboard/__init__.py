"""The session manager's web dashboard and Prometheus metrics.

:class:`Dashboard` serves the pages, the live updates (server-sent events from one publisher)
and ``/metrics`` over HTTP on the session manager's event loop. Everything it shows is read
through :mod:`flame.dashboard._state`, the one module that knows the controller's internals; the
HTTP server (aiohttp, :mod:`flame.dashboard._server`) is loaded when the dashboard starts.
"""

from __future__ import annotations

from flame.dashboard._dashboard import COOKIE, Dashboard

__all__ = ["COOKIE", "Dashboard"]
