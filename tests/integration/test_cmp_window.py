"""CMP key update outside the renewal window: certificates valid 365 days, window 30 days, so a
new certificate is not renewable yet and ``kur`` is refused (notAuthorized), nothing issued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration import lifecycle
from tests.integration.conftest import register
from tests.integration.test_cmp import (
    certificates_of,
    chain_file,
    cmp_secret,
    enrol,
    kur,
    real_time,
    write_key,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ca_config = lifecycle.ca_config
signer = lifecycle.signer
signer_process = lifecycle.signer_process
gateway_config = lifecycle.gateway_config
__all__ = ["real_time"]  # the autouse fixture: the gateway's clock follows openssl's


async def test_kur_outside_window(base_url: str, officer: Any, tmp_path: Path) -> None:
    chain = await chain_file(base_url, officer, tmp_path)
    slip = await register(officer)
    issued = await cmp_secret(officer, slip["subscriber_id"])
    rc, out, cert = await enrol(base_url, tmp_path, issued["reference"], issued["secret"])
    assert rc == 0, out
    write_key(tmp_path / "n.key")
    rc, out = await kur(
        base_url, chain, cert, tmp_path / "c.key", tmp_path / "n.key", tmp_path / "n.pem"
    )
    assert rc != 0 and "PKIFailureInfo: notAuthorized" in out, out
    assert "not renewable" in out
    assert len(await certificates_of(officer, slip["subscriber_id"])) == 1
