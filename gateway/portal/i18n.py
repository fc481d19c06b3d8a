"""Portal texts in Traditional Chinese (the default) and English, looked up by key.

The texts are data: ``texts/zh-TW.toml`` and ``texts/en.toml`` (package data, installed with
the gateway), one flat table of key = text each; every key is in both files
(``tests/unit/test_i18n.py``). Menu and field names follow the operations manual the portal is
modelled on; every sentence is our own. Templates use ``t(key)``; the keys under ``JS_KEYS`` are
also handed to the browser code as a JSON data block (not a script) so its messages speak the
page's language.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import msgspec

TEXTS = Path(__file__).resolve().parent / "texts"
DEFAULT = "zh-TW"


def _load(lang: str) -> dict[str, str]:
    """One language's table; a value that is not a string fails at import, not on a page."""
    with (TEXTS / f"{lang}.toml").open("rb") as f:
        return msgspec.convert(tomllib.load(f), dict[str, str])


ZH = _load("zh-TW")
EN = _load("en")
MESSAGES = {"zh-TW": ZH, "en": EN}

# texts the browser code shows after the page loaded (errors, results, table cells)
JS_KEYS = tuple(
    k
    for k in ZH
    if k.startswith(
        ("err_", "st_", "pw_", "r_", "c_", "usage_", "act_", "answer_", "rv_", "dl_", "captcha_")
    )
)
JS_KEYS += (
    "apply_done",
    "go_download",
    "working",
    "dl_done",
    "dl_nokey",
    "dl_pick",
    "dl_none",
    "backup_urge",
    "export",
    "export_done",
    "ra_login",
    "password",
    "slip_reset_password",
    "slip_password",
    "pick_cert",
    "name",
    "id_number",
    "subscriber_name",
    "email",
    "phone",
    "address",
    "account",
    "captcha",
    "export_err_pw",
    "import_done",
    "import_err",
    "renew_done",
    "renew_pick",
    "renew_nokey",
    "renew_none",
    "info_none",
    "show_pem",
    "yes",
    "no",
    "ra_dup",
    "ra_invalid",
    "ra_none",
    "ra_view",
    "ra_locked",
    "ra_active",
    "ra_reset_confirm",
    "ra_revoke",
    "ra_revoke_confirm",
    "ra_revoked_done",
    "ra_more",
    "captcha_alt",
    "m_download",
    "export_pw",
    "export_pw2",
    "export_format",
    "fmt_modern",
    "fmt_legacy",
    "fmt_legacy_note",
    "fmt_legacy_ec",
    "export_title",
    "submit",
    "ra_reason",
    "slip_title",
    "slip_reset_title",
    "terms_accept",
)
JS_KEYS += tuple(k for k in ZH if k.startswith("f_"))  # the second-factor pages


def pick(requested: str | None, cookie: str | None) -> str:
    """The page's language: the query's ``lang``, else the cookie's, else zh-TW."""
    for candidate in (requested, cookie):
        if candidate in MESSAGES:
            return candidate  # type: ignore[return-value]
    return DEFAULT


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **fmt)`` for templates: the text of ``key``, its placeholders filled."""
    table = MESSAGES[lang]

    def t(key: str, **fmt: object) -> str:
        text = table[key]
        return text.format(**fmt) if fmt else text

    return t


def js_messages(lang: str) -> dict[str, str]:
    """The texts the browser code needs, in ``JS_KEYS`` order."""
    table = MESSAGES[lang]
    return {k: table[k] for k in JS_KEYS}
