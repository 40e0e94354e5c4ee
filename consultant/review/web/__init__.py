"""The consultant web console and REST API (``caseconsultant console``; part of ``run``)."""

from __future__ import annotations

from consultant.review.web.app import create_app
from consultant.review.web.server import serve_in_thread

__all__ = ["create_app", "serve_in_thread"]
