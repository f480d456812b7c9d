"""Calling the console app in-process with its real lifespan, as an account or the service token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from starlette.testclient import TestClient

from console.app import create_app
from tests.console.console_rows import PASSWORD
from worktool.settings import Settings

TOKEN = "accounts-test-service-token-41d8"
JWT_SECRET = "accounts-test-jwt-secret-7c1e5b2d4a6c8e0f9a"
ROLES = ["admin", "supervisor", "staff", "inspector"]


@contextmanager
def console(settings: Settings, client_host: str = "127.0.0.1") -> Iterator[TestClient]:
    """The app with its real lifespan (pool and producer), for several requests."""
    with TestClient(create_app(settings), base_url="http://console", client=(client_host, 40000)) as client:
        yield client


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def craft(claims: dict[str, Any], secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    """A token as the console would sign it, with `claims` changed (None drops a claim)."""
    now = datetime.now(UTC)
    full = {"sub": "admin", "role": "admin", "iat": now, "exp": now + timedelta(minutes=5), **claims}
    return jwt.encode({k: v for k, v in full.items() if v is not None}, secret, algorithm=algorithm)
