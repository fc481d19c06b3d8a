"""The one Jinja environment over ``gateway/portal/templates``: the portal's page shells and the
RA's printable password slip are rendered with the same loader, escaping and whitespace rules."""

from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
