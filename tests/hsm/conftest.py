"""Fixtures for tests that need a real SoftHSM token with a finished CA ceremony.

Each fixture is module-scoped: one fresh token and one dev ceremony per test module, so modules
never see each other's keys, and the (slow) key generation is not repeated per test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.softhsm import make_ca


@pytest.fixture(scope="module")
def ca_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Config path of a CA with RSA-2048 root-1 and issuing-1 on a fresh token."""
    return make_ca(tmp_path_factory.mktemp("ca-rsa"), "rsa2048")


@pytest.fixture(scope="module")
def ca_config_ec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Config path of a CA with P-256 root-1 and issuing-1 on a fresh token."""
    return make_ca(tmp_path_factory.mktemp("ca-ec"), "p256")
