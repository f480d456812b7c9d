"""One set of numeric limits from the gateway to the schema (issue 13, finding 4): every numeric field of
every callback model declares where it is stored (worktool.models.StoredIn) and accepts only what that
storage holds. Checked here against the migrated schema itself (information_schema), so a new field
without a declaration, a widened field or a narrowed column fails this test before it fails in production
(a 200 answered, then a record dead-lettered by the Postgres sink)."""

from __future__ import annotations

import psycopg
import pytest

from worktool.models import CALLBACK_MODELS, JSON_INT, NumericField, numeric_fields

pytestmark = pytest.mark.integration

FIELDS = [(kind, f) for kind, model in CALLBACK_MODELS.items() for f in numeric_fields(model)]


def test_the_callback_models_have_numeric_fields_at_all() -> None:
    paths = {f"{kind}.{f.path}" for kind, f in FIELDS}
    assert {"message.roomType", "message.textType", "result.errorCode", "accepted.errorCode"} <= paths


@pytest.mark.parametrize(("kind", "field"), FIELDS, ids=[f"{k}.{f.path}" for k, f in FIELDS])
def test_every_numeric_field_fits_the_column_it_is_stored_in(
    new_database, kind: str, field: NumericField
) -> None:
    assert field.stored is not None, f"{kind}.{field.path}: declare where it is stored (StoredIn)"
    stored = field.stored
    if field.is_float:
        # Kept in JSON only: finite (JSON and jsonb have no NaN or Infinity), any double.
        assert stored.sql is None and not stored.columns, f"{kind}.{field.path}: a float column needs a check"
        return
    assert stored.sql is not None and field.low is not None and field.high is not None, field
    assert stored.sql.min <= field.low <= field.high <= stored.sql.max, field
    if not stored.columns:
        assert stored.sql == JSON_INT  # orjson writes at most 64 bits
        return
    with psycopg.connect(new_database(migrated=True)) as conn:
        for column in stored.columns:
            table, name = column.split(".")
            row = conn.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                (table, name),
            ).fetchone()
            assert row is not None, f"{kind}.{field.path}: no column {column}"
            assert row[0] == stored.sql.name, (
                f"{column} is {row[0]}, {kind}.{field.path} says {stored.sql.name}"
            )
            # The declared range is the column type's real range, not just a name.
            low, high = conn.execute(
                f"SELECT %s::{row[0]}, %s::{row[0]}", (stored.sql.min, stored.sql.max)
            ).fetchone()
            assert (low, high) == (stored.sql.min, stored.sql.max)
            for beyond in (stored.sql.min - 1, stored.sql.max + 1):
                with pytest.raises(psycopg.errors.NumericValueOutOfRange), conn.transaction():
                    conn.execute(f"SELECT %s::numeric::{row[0]}", (beyond,))
