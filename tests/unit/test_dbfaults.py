"""gateway.dbfaults: which errors are database outages (a retryable 503), and one warning each."""

from __future__ import annotations

import logging

import pytest
from asyncpg import exceptions as pgx

from gateway import dbfaults


def test_server_side_outages_are_recognised() -> None:
    for exc in (
        pgx.CannotConnectNowError("starting up"),
        pgx.AdminShutdownError("stop"),
        pgx.ReadOnlySQLTransactionError("read-only"),
        pgx.ConnectionDoesNotExistError("lost"),
        pgx.TooManyConnectionsError("full"),
        pgx.InterfaceError("connection is closed"),
    ):
        assert dbfaults.outage_reason(exc) is not None, exc


def test_other_errors_stay_bugs() -> None:
    """An OSError or a timeout from outside asyncpg (a file, the signer) is not an outage, nor
    is a constraint violation: those keep their 500 and traceback."""
    try:
        open("/nonexistent/file")
    except OSError as exc:
        assert dbfaults.outage_reason(exc) is None
    assert dbfaults.outage_reason(TimeoutError()) is None
    assert dbfaults.outage_reason(pgx.UniqueViolationError("dup")) is None
    assert dbfaults.outage_reason(pgx.InterfaceError("another operation is in progress")) is None


def test_one_warning_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    log = dbfaults.OutageLog(quiet_seconds=60)
    with caplog.at_level(logging.WARNING, logger="gateway.database"):
        for _ in range(50):
            log.record("ConnectionRefusedError", "GET /api/v1/me")
    assert len(caplog.records) == 1
    assert log.suppressed == 49
