"""Identity numbers and registration fields as the registration desk sees them: pure checks.

The RA types what is printed on the papers in front of it; a typo there ends up in a
certificate and in every later search, so the numbers are checked the way their issuers define
them, not only by length:

- 身分證統一編號 (national ID): a letter for the place of first registration, 1 or 2, seven
  digits and a check digit (the letter counts as a two-digit number, weights 1 9 8 7 6 5 4 3 2 1 1).
- 居留證 / 外來人口統一證號 (resident certificate): since 2021 a letter, 8 or 9 and eight more
  digits under the same rule; the old form (still on valid cards) has a second letter A-D whose
  code's last digit takes the place of the second character.
- 統一編號 (company / organisation number): 8 digits, weights 1 2 1 2 1 2 4 1, the digits of each
  product summed; valid when the sum is divisible by 5 (the Ministry of Finance widened the
  rule from 10 to 5 in 2023; every number valid under 10 stays valid). When the 7th digit is 7
  its product 28 may count as 1 or 0, so sum + 1 divisible by 5 is valid too.
- Country codes: ISO 3166-1 alpha-2 as maintained in pycountry's copy of the ISO tables.
- E-mail: syntax only (email-validator, no DNS look-up: the desk may be offline and a domain's
  DNS says nothing about whether the subscriber reads the mailbox).

Everything here is a pure function of its input; ``checked`` raises the gateway's
``invalid_field`` with the offending field, the only thing the registration service calls.
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum

import email_validator
import pycountry

from db.queries.subscribers import NewSubscriber
from gateway.errors import ApiError, Kind

# letter -> two-digit code, as printed in the Ministry of the Interior's rule
LETTER_CODES: dict[str, int] = {
    "A": 10,
    "B": 11,
    "C": 12,
    "D": 13,
    "E": 14,
    "F": 15,
    "G": 16,
    "H": 17,
    "I": 34,
    "J": 18,
    "K": 19,
    "L": 20,
    "M": 21,
    "N": 22,
    "O": 35,
    "P": 23,
    "Q": 24,
    "R": 25,
    "S": 26,
    "T": 27,
    "U": 28,
    "V": 29,
    "W": 32,
    "X": 30,
    "Y": 31,
    "Z": 33,
}
_PERSON = re.compile(r"^[A-Z][12][0-9]{8}$")
_RESIDENT_NEW = re.compile(r"^[A-Z][89][0-9]{8}$")
_RESIDENT_OLD = re.compile(r"^[A-Z][A-D][0-9]{8}$")
_COMPANY = re.compile(r"^[0-9]{8}$")
_COMPANY_WEIGHTS = (1, 2, 1, 2, 1, 2, 4, 1)


class IdKind(StrEnum):
    NATIONAL_ID = "national_id"
    RESIDENT_NEW = "resident_new"
    RESIDENT_OLD = "resident_old"
    COMPANY = "company"


def _letter_number_ok(first: str, second_value: int, digits: str) -> bool:
    """The shared check of the national ID and both resident certificate forms."""
    code = LETTER_CODES[first]
    total = code // 10 + (code % 10) * 9 + second_value * 8
    for weight, d in zip((7, 6, 5, 4, 3, 2, 1), digits[:7], strict=True):
        total += weight * int(d)
    total += int(digits[7])
    return total % 10 == 0


def national_id_ok(value: str) -> bool:
    """身分證統一編號, e.g. A123456789."""
    return bool(_PERSON.match(value)) and _letter_number_ok(value[0], int(value[1]), value[2:])


def resident_new_ok(value: str) -> bool:
    """New-form resident certificate number (second character 8 or 9), e.g. A800000014."""
    return bool(_RESIDENT_NEW.match(value)) and _letter_number_ok(
        value[0], int(value[1]), value[2:]
    )


def resident_old_ok(value: str) -> bool:
    """Old-form resident certificate number (second character a letter A-D), e.g. AA00000009."""
    return bool(_RESIDENT_OLD.match(value)) and _letter_number_ok(
        value[0], LETTER_CODES[value[1]] % 10, value[2:]
    )


def company_number_ok(value: str) -> bool:
    """統一編號 with the divisible-by-5 rule and the 7th-digit-7 exception."""
    if not _COMPANY.match(value):
        return False
    total = 0
    for weight, d in zip(_COMPANY_WEIGHTS, value, strict=True):
        product = weight * int(d)
        total += product // 10 + product % 10
    return total % 5 == 0 or (value[6] == "7" and (total + 1) % 5 == 0)


def id_kind(value: str) -> IdKind | None:
    """Which kind of number ``value`` is, or None when it is none of them (or a check fails)."""
    for kind, ok in (
        (IdKind.NATIONAL_ID, national_id_ok),
        (IdKind.RESIDENT_NEW, resident_new_ok),
        (IdKind.RESIDENT_OLD, resident_old_ok),
        (IdKind.COMPANY, company_number_ok),
    ):
        if ok(value):
            return kind
    return None


def country_ok(code: str) -> bool:
    """An ISO 3166-1 alpha-2 code in upper case (TW, JP, US, ...)."""
    return (
        len(code) == 2
        and code.isascii()
        and code.isupper()
        and pycountry.countries.get(alpha_2=code) is not None
    )


def email_ok(address: str) -> bool:
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


def checked(new: NewSubscriber) -> NewSubscriber:
    """``new`` with its id number and country in canonical (upper) case, or ``invalid_field``
    naming the first field that is not a real identity number, country or e-mail address."""
    id_number = new.id_number.strip().upper()
    if id_kind(id_number) is None:
        raise ApiError(
            Kind.INVALID_FIELD,
            "id_number is not a valid national ID, resident "
            "certificate or company number (check digit)",
            field="id_number",
        )
    country = new.subject_c.strip().upper()
    if not country_ok(country):
        raise ApiError(
            Kind.INVALID_FIELD,
            "subject.c is not an ISO 3166-1 alpha-2 country code",
            field="subject.c",
        )
    if not email_ok(new.email):
        raise ApiError(Kind.INVALID_FIELD, "email is not a valid e-mail address", field="email")
    return dataclasses.replace(new, id_number=id_number, subject_c=country)
