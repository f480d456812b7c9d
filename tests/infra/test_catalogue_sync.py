"""The package's personas and templates copied into PostgreSQL after migrating (infra/migrate.py,
sync_catalogue): every template and the seven presets, idempotent, a changed or removed template handled."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from infra.migrate import apply_up, sync_catalogue
from worktool.catalogue import shipped_catalogue

pytestmark = pytest.mark.integration


def test_apply_up_copies_the_catalogue_once(new_database: Callable[..., str]) -> None:
    url = new_database(migrated=True)
    catalogue = shipped_catalogue()
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT template_id, category, category_name, template, variables FROM ai_message_templates "
            "WHERE is_active"
        ).fetchall()
        assert len(rows) == len(catalogue.templates) >= 100
        assert len({r[1] for r in rows}) == 24
        by_id = {r[0]: r for r in rows}
        assert by_id["tpl_complaint_01"][2] == "投诉处理" and "抱歉" in by_id["tpl_complaint_01"][3]
        assert conn.execute("SELECT count(*) FROM ai_personas WHERE current_version = 1").fetchone() == (7,)
        assert conn.execute("SELECT count(*) FROM ai_persona_versions").fetchone() == (7,)
        # Again: nothing written.
        assert sync_catalogue(conn) == {"persona_versions": 0, "templates": 0, "retired": 0}
        # A template edited in the database is put back; one the package no longer has is retired.
        conn.execute(
            "UPDATE ai_message_templates SET template = 'x', checksum = 'old' WHERE template_id = 'tpl_general_01'"
        )
        conn.execute(
            "INSERT INTO ai_message_templates (template_id, category, category_name, name, template, variables, "
            "personas, message_types, scenarios, shifts, checksum) "
            "VALUES ('tpl_gone', 'general', '通用回复', 'gone', 'x', '{}', '{}', '{}', '{}', '{}', 'c')"
        )
        assert sync_catalogue(conn) == {"persona_versions": 0, "templates": 1, "retired": 1}
        assert conn.execute(
            "SELECT template FROM ai_message_templates WHERE template_id = 'tpl_general_01'"
        ).fetchone() == (catalogue.by_id("tpl_general_01").text,)
    assert apply_up(url) == []
