"""`worktool classify`: raw records in, one classification per line out."""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError

from classifiers import build_classifier, close_classifier
from operators.classify import Classifier, classification_fields
from operators.parse import parse_message
from worktool.config import ConfigError, load_config
from worktool.models import Message, RawRecord
from worktool.settings import get_settings

_BATCH = 64  # records classified together (lets an LLM classifier work concurrently)


# ---------------------------------------------------------------------------------------------
# worktool classify


def cli_classify(stdin: BinaryIO | None = None, stdout: Any = None) -> int:
    """Raw records (JSONL) on stdin -> one JSON line per record on stdout. Records that are not messages
    or are malformed give a line with "error". Exit 1 only when stdin cannot be read."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    settings = get_settings()
    try:
        config = load_config(settings.config_path)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    classifier = build_classifier(settings, config)
    try:
        pending: list[tuple[int, Message]] = []
        results: list[dict[str, Any]] = []
        try:
            for lineno, raw in enumerate(stdin, start=1):
                if not raw.strip():
                    continue
                parsed = _parse_line(raw)
                if isinstance(parsed, Message):
                    pending.append((len(results), parsed))
                    results.append({})
                else:
                    results.append({"line": lineno, "error": parsed})
                if len(pending) >= _BATCH:
                    _flush(classifier, pending, results, stdout)
                    pending, results = [], []
        except OSError as e:
            _flush(classifier, pending, results, stdout)
            print(f"cannot read stdin: {e}", file=sys.stderr)
            return 1
        _flush(classifier, pending, results, stdout)
        return 0
    finally:
        close_classifier(classifier)


def _parse_line(raw: bytes) -> Message | str:
    """The Message of one JSONL line, or why there is none."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return f"not JSON: {e}"
    try:
        record = RawRecord.model_validate(data)
    except ValidationError as e:
        return "not a raw record: " + _first_error(e)
    if record.kind != "message":
        return f"not a message record (kind={record.kind})"
    try:
        return parse_message(record)[1]
    except ValidationError as e:
        return "malformed message body: " + _first_error(e)
    except ValueError as e:
        return f"malformed message body: {e}"


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{loc}: {err['msg']}"


def _flush(
    classifier: Classifier, pending: list[tuple[int, Message]], results: list[dict[str, Any]], out: Any
) -> None:
    if pending:
        for (slot, m), c in zip(pending, classifier.classify_batch([m for _, m in pending]), strict=True):
            results[slot] = classification_fields(m.message_id, c)
    for row in results:
        out.write(orjson.dumps(row) + b"\n")
    out.flush()
