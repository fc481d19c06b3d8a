"""The key-ceremony journal: what the security officer did to the CA keys, as JSON lines.

Ceremonies often run where the database is not reachable (an offline ceremony machine), so
``ca-keys`` appends each key event to ``<[ca] dir>/ceremony-journal.jsonl`` and
``ca-admin audit import-journal`` copies new entries into the hash-chained audit log, once
each (every entry has a random id). Entries never contain PINs.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets
from pathlib import Path
from typing import Any

from config.loader import RawConfig
from config.manifest import ca_dir

JOURNAL_NAME = "ceremony-journal.jsonl"


def journal_path(cfg: RawConfig) -> Path:
    return ca_dir(cfg) / JOURNAL_NAME


def record(cfg: RawConfig, action: str, target: str, details: dict[str, Any]) -> None:
    """Append one event; the file is opened append-only and flushed to disk at once."""
    path = journal_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = f"uid-{os.getuid()}"
    entry = {
        "journal_id": secrets.token_hex(16),
        "at": dt.datetime.now(dt.UTC).isoformat(),
        "actor": f"security-officer:{actor}",
        "action": action,
        "target": target,
        "details": details,
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON") from exc
        if not isinstance(entry, dict) or not {"journal_id", "at", "action"} <= set(entry):
            raise ValueError(f"{path}:{number}: not a journal entry")
        entries.append(entry)
    return entries
