"""The real signer daemon on SoftHSM refuses OCSP answers and CRLs outside its bounds, whatever
the caller asks: each bound has its own error kind, is counted in ``ca_signer_errors_total``,
costs no signature, and the CRL numbers stay increasing across a restart of the daemon."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from signer.client import SignerClient
from signer.errors import ErrorKind, SignerError
from signer.protocol import CrlRequest, OcspRequest, RevokedEntry
from tests.hsm.test_ocsp_responder import free_port, metrics
from tests.support.signer_proc import running_signer, socket_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SERIAL = (1 << 99) | 12345
SKEW = 120
OCSP_HOURS = 2
CRL_HOURS = 30  # [policy] crl_next_update_hours (24) fits


def env(port: int) -> dict[str, str]:
    return {
        "CA_SIGNER_METRICS_PORT": str(port),
        "CA_SIGNER_OCSP_MAX_VALIDITY_HOURS": str(OCSP_HOURS),
        "CA_SIGNER_CRL_MAX_VALIDITY_HOURS": str(CRL_HOURS),
        "CA_SIGNER_MAX_CLOCK_SKEW_SECONDS": str(SKEW),
    }


async def ocsp_kind(client: SignerClient, **over: object) -> ErrorKind | None:
    now = int(time.time())
    fields: dict[str, object] = dict(
        issuer="issuing-1",
        serial=SERIAL,
        status="good",
        this_update=now,
        next_update=now + 3600,
    )
    fields.update(over)
    (result,) = await client.sign_ocsp([OcspRequest(**fields)])  # type: ignore[arg-type]
    if result.error is None:
        assert ocsp.load_der_ocsp_response(result.unwrap()).serial_number == SERIAL
        return None
    return result.error.kind


async def crl_kind(
    client: SignerClient,
    number: int,
    *,
    this_update: int | None = None,
    hours: float = 24,
    entries: tuple[RevokedEntry, ...] = (),
) -> ErrorKind | None:
    now = int(time.time()) if this_update is None else this_update
    try:
        der = await client.sign_crl(
            CrlRequest("issuing-1", number, now, now + int(hours * 3600), entries)
        )
    except SignerError as exc:
        return exc.kind
    crl = x509.load_der_x509_crl(der)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    return None


def test_every_bound_is_refused_counted_and_unsigned(ca_config_ec: Path) -> None:
    port = free_port()
    sock = socket_of(ca_config_ec)
    ca, resp = (
        'ca_signer_key_signatures_total{role="ca"}',
        'ca_signer_key_signatures_total{role="ocsp"}',
    )

    async def first_run() -> tuple[dict[str, float], dict[str, float]]:
        client = SignerClient([f"unix:{sock}"], timeout=10)
        try:
            # warm-up: every worker answered once (their start-up signatures are reported)
            for _ in range(4):
                assert await ocsp_kind(client) is None
            before = metrics(port)
            now = int(time.time())
            assert await ocsp_kind(client, next_update=now + OCSP_HOURS * 3600) is None
            # a "good" answer valid for a day, to replay after a revocation (one valid for
            # years is refused before: it would outlive the responder certificate)
            assert await ocsp_kind(client, next_update=now + 86400) is ErrorKind.VALIDITY_TOO_LONG
            assert (
                await ocsp_kind(client, next_update=now + 100 * 365 * 86400)
                is ErrorKind.NO_RESPONDER
            )
            assert (
                await ocsp_kind(client, next_update=now + OCSP_HOURS * 3600 + 1)
                is ErrorKind.VALIDITY_TOO_LONG
            )
            # the window moved into the future (or backdated) beyond the skew
            assert (
                await ocsp_kind(client, this_update=now + SKEW + 30, next_update=now + 3600)
                is ErrorKind.CLOCK_SKEW
            )
            assert (
                await ocsp_kind(client, this_update=now - SKEW - 30, next_update=now + 600)
                is ErrorKind.CLOCK_SKEW
            )
            assert (
                await ocsp_kind(
                    client, status="revoked", revoked_at=now + SKEW + 30, reason="keyCompromise"
                )
                is ErrorKind.REVOCATION_IN_FUTURE
            )
            assert (
                await ocsp_kind(
                    client, status="revoked", revoked_at=now - 60, reason="keyCompromise"
                )
                is None
            )
            # CRLs: the window, the skew, entries, then the numbers
            assert await crl_kind(client, 10) is None
            assert await crl_kind(client, 10) is ErrorKind.CRL_NUMBER_NOT_INCREASING
            assert await crl_kind(client, 9) is ErrorKind.CRL_NUMBER_NOT_INCREASING
            assert await crl_kind(client, 11, hours=CRL_HOURS + 1) is ErrorKind.VALIDITY_TOO_LONG
            assert await crl_kind(client, 12, this_update=now + SKEW + 30) is ErrorKind.CLOCK_SKEW
            assert (
                await crl_kind(
                    client, 13, entries=(RevokedEntry(SERIAL, now + SKEW + 30, "keyCompromise"),)
                )
                is ErrorKind.REVOCATION_IN_FUTURE
            )
            # a refused CRL used up its number; the next one is fine
            assert await crl_kind(client, 13) is ErrorKind.CRL_NUMBER_NOT_INCREASING
            assert await crl_kind(client, 14, hours=CRL_HOURS) is None
            return before, metrics(port)
        finally:
            await client.close()

    with running_signer(ca_config_ec, workers=2, env=env(port)):
        before, after = asyncio.run(first_run())

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta(resp) == 2  # the two OCSP answers inside the bounds, nothing else
    assert delta(ca) == 2  # the two CRLs inside the bounds
    errors = 'ca_signer_errors_total{kind="%s"}'
    assert delta(errors % "validity_too_long") == 3
    assert delta(errors % "clock_skew") == 3
    assert delta(errors % "revocation_in_future") == 2
    assert delta(errors % "crl_number_not_increasing") == 3

    async def second_run() -> None:
        client = SignerClient([f"unix:{sock}"], timeout=10)
        try:
            assert await crl_kind(client, 14) is ErrorKind.CRL_NUMBER_NOT_INCREASING
            assert await crl_kind(client, 2) is ErrorKind.CRL_NUMBER_NOT_INCREASING
            assert await crl_kind(client, 15) is None
        finally:
            await client.close()

    # a restarted daemon remembers the last number it signed (its state folder)
    with running_signer(ca_config_ec, workers=1, env=env(free_port())):
        asyncio.run(second_run())
