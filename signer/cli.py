"""``ca-signer``: run the signing daemon, or check its configuration against the token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from prometheus_client import CollectorRegistry, start_http_server

from config.identities import shared_identity_reason
from config.loader import ConfigError, config_path, load
from config.logs import configure_logging
from config.token import token_config
from signer.allocator import preload_library, worker_environment
from signer.config import SignerConfig, load_signer_config
from signer.errors import SignerError
from signer.metrics import SignerMetrics
from signer.pool import WorkerPool
from signer.server import SignerServer

log = logging.getLogger("signer")


def check_config(config: str, scfg: SignerConfig) -> int:
    """Everything a worker checks before taking work, done once in this process."""
    from signer.hsm.token import TokenHandle
    from signer.worker import open_audit_key, open_registry

    handle = TokenHandle(token_config(load(config)))
    try:
        handle.open()
        registry = open_registry(handle, scfg)
        audit = open_audit_key(handle, scfg)
    finally:
        handle.close()
    print(f"token {handle.cfg.label!r}: logged in, test signatures verified")
    if audit is None:
        print(f"audit key: none recorded ({scfg.audit_public_key}); checkpoints are refused")
    else:
        print(f"audit key {scfg.audit_key_label}: SHA-256 {audit.fingerprint.hex()}")
    for issuer in registry.issuers.values():
        flag = " (active)" if issuer.active else ""
        print(f"issuer {issuer.name}{flag}: {issuer.certificate.subject.rfc4514_string()}")
    for profile in scfg.profiles.values():
        print(f"profile {profile.name}: usage {profile.usage}")
    return 0


def _worker_allocator(scfg: SignerConfig) -> None:
    """Give the worker processes, started from this environment, their allocator."""
    name = scfg.worker_allocator
    library = preload_library(name)
    if library is None:
        if name != "system":
            log.warning(
                "%s is not installed (Debian: libtcmalloc-minimal4); workers use the system "
                "allocator, about 1-2%% slower for RSA and 9%% for P-256",
                name,
            )
        return
    os.environ.update(worker_environment(library))
    log.info("workers use %s (%s)", name, library)


def _warn_if_shared_identity() -> None:
    """One warning at start when this daemon's files are open to whoever shares its account."""
    reason = shared_identity_reason()
    if reason:
        log.warning(
            "identity boundary off: %s; whatever else runs as this user (the gateway, under "
            "`make run` without root) can read the token PIN; run the signer as ca-signer "
            "(deploy/systemd/)",
            reason,
        )


async def serve(config: str, scfg: SignerConfig) -> int:
    _warn_if_shared_identity()
    _worker_allocator(scfg)
    registry = CollectorRegistry()
    metrics = SignerMetrics(registry)
    if scfg.metrics_port:
        start_http_server(scfg.metrics_port, scfg.metrics_host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", scfg.metrics_host, scfg.metrics_port)
    pool = WorkerPool(
        config,
        scfg.workers,
        metrics,
        batch_max=scfg.batch_max,
        bulk_batch_max=scfg.bulk_batch_max,
        max_queue=scfg.max_queue,
        pipeline_depth=scfg.pipeline_depth,
        stall_seconds=scfg.stall_seconds,
        heartbeat_timeout=scfg.heartbeat_timeout,
    )
    server = SignerServer(scfg, pool, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await pool.start()
    await server.start()
    if await pool.wait_ready(60):
        log.info("ready: %d worker(s), active issuer %s", scfg.workers, scfg.active_issuer.name)
    else:
        log.warning("no worker is ready yet; serving retryable errors until the token answers")
    await stop.wait()
    log.info("stopping")
    await server.stop()
    await pool.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ca-signer", description=__doc__)
    parser.add_argument("--config", help="configuration file (default: $CA_CONFIG or var/ca.toml)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check the configuration, the token and every issuer key, then exit",
    )
    args = parser.parse_args(argv)
    config = str(config_path(args.config).resolve())
    try:
        scfg = load_signer_config(load(config))
    except ConfigError as exc:
        print(f"ca-signer: {exc}", file=sys.stderr)
        return 2
    configure_logging(scfg.log_level)
    try:
        if args.check_config:
            return check_config(config, scfg)
        try:
            import uvloop

            return uvloop.run(serve(config, scfg))
        except ImportError:
            return asyncio.run(serve(config, scfg))
    except (ConfigError, SignerError) as exc:
        print(f"ca-signer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
