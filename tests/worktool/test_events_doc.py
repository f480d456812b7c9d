"""docs/events.md describes every event of the catalogue: a section per event, naming each data field,
so a new event or field cannot reach the monitor topic undocumented."""

from __future__ import annotations

import re

from tests.support import REPO
from worktool.events import CATALOGUE

DOC = REPO / "docs" / "events.md"


def _sections() -> dict[str, str]:
    """Event name -> the text of its `### \\`name\\`` section."""
    parts = re.split(r"^### `([a-z_]+)`\s*$", DOC.read_text("utf-8"), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_event_of_the_catalogue_has_a_section():
    missing = sorted(set(CATALOGUE) - set(_sections()))
    assert not missing, f"docs/events.md does not describe: {', '.join(missing)}"


def test_every_section_is_an_event_of_the_catalogue():
    unknown = sorted(set(_sections()) - set(CATALOGUE))
    assert not unknown, f"docs/events.md describes events that do not exist: {', '.join(unknown)}"


def test_every_data_field_is_described_in_its_event_section():
    sections = _sections()
    undescribed = [
        f"{name}.{field}"
        for name, model in CATALOGUE.items()
        if name in sections
        for field in model.model_fields
        if not re.search(rf"^\| `{field}` \|", sections[name], flags=re.MULTILINE)
    ]
    assert not undescribed, f"fields missing from docs/events.md: {', '.join(undescribed)}"
