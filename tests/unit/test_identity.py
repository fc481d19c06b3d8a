"""The registration desk's identity checks (gateway/identity.py) on known valid and invalid
numbers: examples published with the rules, one-digit typos, wrong shapes, and the
7th-digit-7 rule of the company number."""

from __future__ import annotations

import pytest

from db.queries.subscribers import NewSubscriber
from gateway import identity
from gateway.errors import ApiError, Kind
from tests.support.identities import company_number, national_id


@pytest.mark.parametrize("value", ["A123456789", "F131104093", "B234567894", "Y200000002"])
def test_national_ids(value: str) -> None:
    assert identity.national_id_ok(value)
    assert identity.id_kind(value) is identity.IdKind.NATIONAL_ID


@pytest.mark.parametrize(
    "value",
    [
        "A123456788",  # the example: bad check digit
        "A123456780",
        "B123456789",
        "A323456789",  # wrong gender digit
        "C123456789x",
        "a12345678",
        "hello",
        "",
        "A12345678",
        "1234567890",
        "A12345678９",
    ],
)
def test_bad_national_ids(value: str) -> None:
    assert not identity.national_id_ok(value)


def test_only_one_check_digit_fits() -> None:
    for good in ("A123456789", "F131104093", national_id(), national_id("2")):
        for d in "0123456789":
            assert identity.national_id_ok(good[:9] + d) == (d == good[9]), good[:9] + d
    # the letter takes part in the check too
    assert not identity.national_id_ok("B123456789")


def test_resident_certificates() -> None:
    assert identity.id_kind("A800000014") is identity.IdKind.RESIDENT_NEW
    assert identity.id_kind("A900000016") is identity.IdKind.RESIDENT_NEW
    assert identity.id_kind("A900000017") is None
    assert identity.id_kind("AA00000009") is identity.IdKind.RESIDENT_OLD
    assert identity.id_kind("FC12345674") is identity.IdKind.RESIDENT_OLD
    assert identity.id_kind("FC12345678") is None
    assert identity.id_kind("FE12345678") is None  # second letter only A-D


@pytest.mark.parametrize("value", ["22099131", "04595257", "12345675", "10458570"])
def test_company_numbers(value: str) -> None:
    assert identity.company_number_ok(value)
    assert identity.id_kind(value) is identity.IdKind.COMPANY


def test_company_number_seventh_digit_seven() -> None:
    # 10000073: 1 + (7*4=28 -> 10) + 3 = 14, not divisible by 5; with 28 counted as 1 the
    # sum is 15: only the 7th-digit-7 rule accepts it
    assert identity.company_number_ok("10000073")
    assert not identity.company_number_ok("10000072")
    assert not identity.company_number_ok("10000075")
    # the same sum without a 7 in 7th place is refused: 1 + (6*4=24 -> 6) + 7 = 14
    assert not identity.company_number_ok("10000067")


@pytest.mark.parametrize("value", ["22099132", "1234567", "123456789", "2209913a", "22 09913"])
def test_bad_company_numbers(value: str) -> None:
    assert not identity.company_number_ok(value)


def test_generated_numbers_pass() -> None:
    for _ in range(200):
        assert identity.id_kind(national_id()) is identity.IdKind.NATIONAL_ID
        assert identity.id_kind(company_number()) is identity.IdKind.COMPANY


def test_countries() -> None:
    for code in ("TW", "JP", "US", "DE", "HK"):
        assert identity.country_ok(code)
    for code in ("XX", "ZZ", "UK", "tw", "T", "TWN", "", "Ｔ"):
        assert not identity.country_ok(code)


def test_emails() -> None:
    assert identity.email_ok("wang@example.tw")
    assert identity.email_ok("yiru.chen+ca@mail.example.com.tw")
    for bad in (
        "hello",
        "a@b",
        "a..b@example.tw",
        "a@@example.tw",
        "a b@example.tw",
        "wang@localhost",
        "@example.tw",
    ):
        assert not identity.email_ok(bad), bad


def _new(**over: object) -> NewSubscriber:
    base: dict[str, object] = dict(
        id_number="a123456789",
        name="王小明",
        email="wang@example.tw",
        phone="",
        address="",
        subject_cn="A123456789-63-WANG",
        subject_ou=(),
        subject_o="",
        subject_c="tw",
        usages=("signing",),
    )
    base.update(over)
    return NewSubscriber(**base)  # type: ignore[arg-type]


def test_checked_normalises_and_names_the_field() -> None:
    ok = identity.checked(_new())
    assert (ok.id_number, ok.subject_c) == ("A123456789", "TW")
    for over, field in (
        ({"id_number": "A123456788"}, "id_number"),
        ({"subject_c": "XX"}, "subject.c"),
        ({"email": "hello"}, "email"),
    ):
        with pytest.raises(ApiError) as err:
            identity.checked(_new(**over))
        assert err.value.kind is Kind.INVALID_FIELD
        assert err.value.extra == {"field": field}
