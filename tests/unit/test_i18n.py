"""The portal's texts (gateway/portal/texts/*.toml): both languages say the same things."""

from __future__ import annotations

import string

from gateway.portal import i18n


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def test_every_key_is_in_both_languages() -> None:
    """A text added to one file only would show a KeyError page in the other language."""
    assert set(i18n.ZH) ^ set(i18n.EN) == set()
    assert set(i18n.MESSAGES) == {"zh-TW", "en"}


def test_both_languages_take_the_same_placeholders() -> None:
    """``t(key, min=..., max=...)`` fills either language: a placeholder in one text only
    would raise KeyError (or stay unfilled) in the other."""
    for key, text in i18n.ZH.items():
        assert _placeholders(text) == _placeholders(i18n.EN[key]), key


def test_texts_are_not_empty_and_the_browser_keys_exist() -> None:
    for table in i18n.MESSAGES.values():
        assert all(text.strip() for text in table.values())
    assert set(i18n.JS_KEYS) <= set(i18n.ZH)
    assert i18n.js_messages("en")["err_network"] == i18n.EN["err_network"]


def test_lookup() -> None:
    assert i18n.pick("en", None) == "en"
    assert i18n.pick("fr", "en") == "en"
    assert i18n.pick(None, None) == i18n.DEFAULT == "zh-TW"
    t = i18n.translator("en")
    assert "8" in t("pw_new_hint", min=8, max=64) and "64" in t("pw_new_hint", min=8, max=64)
