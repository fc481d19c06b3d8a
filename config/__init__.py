"""The configuration every component shares: the TOML file and its overrides (``loader``), the
typed sections (``sections``), the token settings (``token``), the issuer manifest
(``manifest``), the OS identities (``identities``) and the one log format (``logs``).

This package imports nothing of ``signer``, ``gateway``, ``hsm_config`` or ``db``; they import
it (``tests/unit/test_import_directions.py``).
"""
