"""``ca-gateway``: load the configuration, start the embedded database if that is the
configured one, and serve."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from config.identities import shared_identity_reason
from config.loader import ConfigError, RawConfig, load
from config.logs import configure_logging
from gateway.config import gateway_config, with_session_key
from gateway.middlewares import request_log_fields

log = logging.getLogger("gateway")


def _warn_if_shared_identity(raw: RawConfig) -> None:
    """One warning at start when nothing keeps this process from the signer's secrets."""
    pin_file = raw.section("token").get("pin_file")
    reason = shared_identity_reason(
        readable_secret=str(raw.resolve(pin_file)) if pin_file else None
    )
    if reason:
        log.warning(
            "identity boundary off: %s; run the gateway under its own user (ca-gateway, "
            "deploy/systemd/) so that it cannot read the token PIN or open the token",
            reason,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ca-gateway", description=__doc__)
    parser.add_argument("--config", help="configuration file (default: $CA_CONFIG or var/ca.toml)")
    parser.add_argument(
        "--check-config", action="store_true", help="parse the configuration and exit"
    )
    args = parser.parse_args(argv)
    try:
        raw = load(args.config)
        config = gateway_config(raw)
    except ConfigError as exc:
        print(f"ca-gateway: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print("configuration ok")
        return 0
    try:
        config = with_session_key(config)  # secrets are read at start, not by --check-config
    except ConfigError as exc:
        print(f"ca-gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, context=request_log_fields)
    if not config.database_url and config.embedded_pg_dir is not None:
        from db.embedded import Cluster, EmbeddedError, ensure_running

        try:  # started by `make run` / the operator; a developer's lone gateway starts it
            if not (Cluster(config.embedded_pg_dir).socket_dir / ".s.PGSQL.5432").exists():
                ensure_running(config.embedded_pg_dir)
        except EmbeddedError as exc:
            print(f"ca-gateway: embedded database: {exc}", file=sys.stderr)
            return 1

    from gateway.app import make_app

    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    _warn_if_shared_identity(raw)
    log.info(
        "listening",
        extra={"host": config.host, "port": config.port, "public_url": config.public_url},
    )
    web.run_app(
        make_app(config),
        host=config.host,
        port=config.port,
        access_log=None,
        print=None,
        loop=loop,
        handle_signals=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
