"""What both reference apps share: the services, sessions, page data, the ACS outcome, templates.

The FastAPI and Flask apps differ only in how they speak HTTP; everything a
product decides (who is an admin, what a page shows, what a sign-in outcome
leads to) lives here, in plain functions over plain values.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC", "TEMPLATES"]

#: The Jinja2 templates both apps render (a base layout and one page each).
TEMPLATES = Path(__file__).parent / "templates"
#: The stylesheet and the copy-button script, served at ``/static``.
STATIC = Path(__file__).parent / "static"
