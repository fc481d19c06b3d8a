"""config.logs: every daemon's one log format, a JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from config.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_one_json_object_per_line_with_fields_context_and_extra(stream: io.StringIO) -> None:
    calls = iter([{"request_id": "r-1"}, {}])
    configure_logging("info", fields={"worker": 3}, context=lambda: next(calls), stream=stream)
    log = logging.getLogger("signer.worker")
    log.info("token %s", "up", extra={"slot": 1})
    log.debug("not at info")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("batch failed")
    first, second = lines(stream)
    assert first["level"] == "info" and first["logger"] == "signer.worker"
    assert (first["msg"], first["worker"], first["request_id"], first["slot"]) == (
        "token up",
        3,
        "r-1",
        1,
    )
    assert str(first["ts"]).endswith("+00:00")
    assert second["level"] == "error" and "request_id" not in second
    assert "ValueError: boom" in str(second["exc"])


def test_level_filters(stream: io.StringIO) -> None:
    configure_logging("warning", stream=stream)
    logging.getLogger("gateway").info("quiet")
    logging.getLogger("gateway").warning("loud")
    assert [line["msg"] for line in lines(stream)] == ["loud"]
