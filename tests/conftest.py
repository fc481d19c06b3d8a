"""Test-session set-up shared by every tier.

SoftHSM reads ``SOFTHSM2_CONF`` when the module is initialised, so the whole pytest session
uses one token folder, made fresh under a temporary directory before anything loads the
module. Tests get fresh tokens by label inside it (see ``tests/support/softhsm.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="ca-tests-"))
_TOKENS = _ROOT / "tokens"
_TOKENS.mkdir()
_CONF = _ROOT / "softhsm2.conf"
_TEMPLATE = Path(__file__).resolve().parent.parent / "softhsm" / "softhsm2.conf.template"
_CONF.write_text(_TEMPLATE.read_text().replace("@TOKENDIR@", str(_TOKENS)))
os.environ["SOFTHSM2_CONF"] = str(_CONF)
os.environ.setdefault("CA_TEST_ROOT", str(_ROOT))
