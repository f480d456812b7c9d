"""`worktool schema`: the JSON Schema of every monitor event and of the raw record, one file each.

Dashboard authors and other consumers of worktool.monitor / worktool.raw validate against these files
instead of reading the Python models. The event schemas come from worktool/events.py (the catalogue),
so a new event gets its file without a change here; docs/events.md describes the same events in words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worktool.events import CATALOGUE, envelope_schema
from worktool.models import RawRecord

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic generates
RAW_RECORD_FILE = "raw_record.schema.json"


def event_schema_file(event: str) -> str:
    return f"{event}.schema.json"


def raw_record_schema() -> dict[str, Any]:
    # Serialization mode: the record as it is on the topic (times as ISO-8601 strings).
    schema = RawRecord.model_json_schema(mode="serialization")
    schema["description"] = "Value on worktool.raw and one line of a JSONL archive."
    return schema


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema: one per event of the catalogue, and the raw record."""
    schemas = {event_schema_file(name): envelope_schema(model) for name, model in sorted(CATALOGUE.items())}
    schemas[RAW_RECORD_FILE] = raw_record_schema()
    return {name: {"$schema": JSON_SCHEMA_DIALECT, **schema} for name, schema in schemas.items()}


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema into `out_dir` (created if missing); returns the files written, sorted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = out_dir / name
        # Stable text (sorted keys, trailing newline) so committed copies diff cleanly.
        path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
        written.append(path)
    return sorted(written)


def cli_schema(out_dir: Path) -> int:
    written = write_schemas(out_dir)
    for path in written:
        print(path)
    print(f"wrote {len(written)} JSON Schema files to {out_dir}")
    return 0
