"""`worktool schema`: one JSON Schema per monitor event and one for the raw record, and every event the
sample day produces validates against the schema of its event (a renamed or retyped field fails here)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import orjson
import pytest

from commands.schema import RAW_RECORD_FILE, event_schema_file, write_schemas
from dataflows.replay import replay_archive
from tests.support import REPO
from worktool.events import CATALOGUE, SCHEMA_VERSION, parse_event
from worktool.settings import Settings

SAMPLE = REPO / "commands" / "data" / "sample_day.jsonl"


def _validator(path: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads(path.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def sample_day_events() -> list[bytes]:
    settings = Settings(config_path=REPO / "config" / "business.example.yaml", llm_provider=None)
    out = io.BytesIO()
    records, rejected = replay_archive(SAMPLE, out, settings=settings)
    assert records > 100 and not rejected
    return out.getvalue().splitlines()


def test_writes_one_schema_per_event_and_one_for_the_raw_record(tmp_path):
    written = write_schemas(tmp_path / "schemas")
    names = {p.name for p in written}
    assert names == {event_schema_file(e) for e in CATALOGUE} | {RAW_RECORD_FILE}
    assert {p.name for p in (tmp_path / "schemas").iterdir()} == names
    for path in written:
        _validator(path)  # each file is a valid Draft 2020-12 schema


def test_every_sample_day_event_validates_against_its_schema(tmp_path, sample_day_events):
    write_schemas(tmp_path)
    validators: dict[str, jsonschema.Draft202012Validator] = {}
    seen: Counter[str] = Counter()
    for line in sample_day_events:
        event = orjson.loads(line)
        name = event["event"]
        schema_file = tmp_path / event_schema_file(name)
        assert schema_file.exists(), f"event {name!r} has no schema"
        if name not in validators:
            validators[name] = _validator(schema_file)
        errors = sorted(validators[name].iter_errors(event), key=lambda e: list(e.path))
        assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)
        parsed = parse_event(line)
        assert parsed.event == name and parsed.schema_version == SCHEMA_VERSION
        seen[name] += 1
    # The sample day exercises intake, classification and the event-time rules.
    assert {"message_classified", "robot_joined_session", "robot_status", "command_callback"} <= set(seen)
    assert {"alert_raised", "session_state", "task_created", "command_created"} <= set(seen)


def test_a_renamed_field_fails_validation(tmp_path, sample_day_events):
    write_schemas(tmp_path)
    validator = _validator(tmp_path / event_schema_file("message_classified"))
    event = next(orjson.loads(x) for x in sample_day_events if b'"message_classified"' in x)
    assert validator.is_valid(event)
    event["data"]["msg_type"] = event["data"].pop("message_type")
    assert not validator.is_valid(event)


def test_every_sample_day_record_validates_against_the_raw_record_schema(tmp_path):
    write_schemas(tmp_path)
    validator = _validator(tmp_path / RAW_RECORD_FILE)
    for line in SAMPLE.read_bytes().splitlines():
        if line.strip():
            validator.validate(orjson.loads(line))
    assert not validator.is_valid({"kind": "message", "robot_id": "r1", "body": {}})  # no received_at


def test_the_command_writes_into_the_named_directory(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "commands.cli", "schema", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(out / event_schema_file("message_classified")) in proc.stdout
    assert f"wrote {len(CATALOGUE) + 1} JSON Schema files" in proc.stdout
    assert len(list(out.glob("*.schema.json"))) == len(CATALOGUE) + 1
