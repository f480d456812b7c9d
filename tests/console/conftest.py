"""Fixtures of the console tests: a fresh migrated database per test, Settings wired to it and to the
broker (service token and JWT secret set), and one account per role."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.console.console_client import JWT_SECRET, ROLES, TOKEN
from tests.console.console_rows import insert_user
from worktool.settings import Settings


@pytest.fixture
def fresh_database_url(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


@pytest.fixture
def settings(
    kafka_bootstrap: str, fresh_database_url: str, unique_topics: Callable[..., Any], tmp_path: Path
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=fresh_database_url,
        api_token=TOKEN,
        jwt_secret=JWT_SECRET,
        data_dir=tmp_path / "data",
        **unique_topics(),
    )


@pytest.fixture
def users(fresh_database_url: str) -> dict[str, str]:
    """One account per role, named after it."""
    for role in ROLES:
        insert_user(fresh_database_url, role, role)
    return {role: role for role in ROLES}
