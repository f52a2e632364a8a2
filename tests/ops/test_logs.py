"""The log's formats and its writer: stable JSON fields, lines written in order in blocks, warnings at once, and
the access log's direct way in only when nothing else could see its lines."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import orjson
import pytest

from bastion.ops.logs import FIELDS, BlockWriter, JsonFormatter, Said, TextFormatter, clean, direct_writer


@pytest.fixture
def written(tmp_path: Path):
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    writer = BlockWriter(fd, flush_seconds=3600)  # the test decides when blocks are written
    writer.setFormatter(TextFormatter())
    yield writer, path
    writer.close()
    os.close(fd)


def record(level: int, message: str, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("bastion.test", level, __file__, 1, message, (), None)
    setattr(made, FIELDS, fields)
    return made


def test_info_lines_wait_for_their_block_and_a_warning_writes_everything_in_order(written):
    writer, path = written
    writer.handle(record(logging.INFO, "first"))
    writer.add((1_700_000_000.5, "INFO", "bastion.access", Said("second", {})))
    assert path.read_text() == ""  # waiting
    writer.handle(record(logging.WARNING, "third"))
    lines = path.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["first", "second", "third"]
    assert lines[1] == "2023-11-14T22:13:20.500Z INFO bastion.access: second"


def test_closing_writes_what_waits(written):
    writer, path = written
    writer.add((1.0, "INFO", "bastion.access", Said("kept", {})))
    writer.close()
    assert path.read_text().endswith("bastion.access: kept\n")


def test_json_lines_have_stable_fields_and_carry_a_record_s_own():
    line = orjson.loads(JsonFormatter().format(record(logging.INFO, 'say "hi"\n', status=200, path="/mcp")))
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert line["level"] == "info" and line["logger"] == "bastion.test" and line["msg"] == 'say "hi"\n'
    assert line["status"] == 200 and line["path"] == "/mcp"
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("bastion.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in orjson.loads(JsonFormatter().format(failed))["exc"]


def test_clean_escapes_control_characters_and_bounds_length():
    assert clean("a\nb\tc\x1b[31m") == "a\\nb\\tc\\x1b[31m"
    assert clean("x" * 500) == "x" * 200 + "..."
    assert clean("café ✓") == "café ✓"


def test_the_direct_way_only_when_the_root_writer_is_the_only_listener(written):
    writer, _ = written
    root, access = logging.getLogger(), logging.getLogger("bastion.access")
    saved = root.handlers[:]
    try:
        root.handlers[:] = [writer]
        assert direct_writer(access) is writer
        extra = logging.NullHandler()
        access.addHandler(extra)  # someone listens on the way: they must see the records
        assert direct_writer(access) is None
        access.removeHandler(extra)
        root.handlers[:] = [writer, logging.NullHandler()]
        assert direct_writer(access) is None
    finally:
        root.handlers[:] = saved
