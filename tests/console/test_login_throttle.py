"""Login throttling against the real app and database: failures slow down the (account, address) pair
that made them, exponentially and capped, and a looser per-address limit stops spraying many accounts;
nobody can lock an account out from elsewhere, nor every user behind one address by failing for one
account. A 429 always carries Retry-After. (Before: 10 failures per account name or per address locked
both for 5 minutes, the right password included.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.auth import LoginThrottle
from tests.console.console_rows import PASSWORD
from worktool.settings import Settings

pytestmark = pytest.mark.integration

ATTACKER = "203.0.113.66"  # TEST-NET addresses: never routed, only ever the ASGI scope's client
OWNER = "198.51.100.7"
ADDRESS_HEADER = "X-Test-Client-Address"


class Clock:
    """The throttle's clock, moved by the test (the back-off is minutes long)."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def console_at_addresses(settings: Settings, clock: Clock | None = None) -> Iterator[TestClient]:
    """The real app, whose client address each request names in ADDRESS_HEADER (the ASGI scope's
    `client`, as a server behind no proxy sees it)."""
    app = create_app(settings)
    if clock is not None:
        app.state.login_throttle = LoginThrottle(clock=clock)

    async def with_client_address(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(ADDRESS_HEADER.lower().encode())
            if host is not None:
                scope = {**scope, "client": (host.decode(), 40000)}
        await app(scope, receive, send)

    with TestClient(with_client_address, base_url="http://console") as client:
        yield client


def attempt(client: TestClient, address: str, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post(
        "/api/auth/login",
        json={"username": username, "password": password},
        headers={ADDRESS_HEADER: address},
    )


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    value = int(response.headers["retry-after"])
    assert value >= 1
    return value


def test_an_attacker_failing_for_admin_does_not_lock_admin_out_from_elsewhere(
    settings: Settings, users: dict[str, str]
) -> None:
    with console_at_addresses(settings) as client:
        guesses = [attempt(client, ATTACKER, "admin", f"guess-{i}-xxxxxxx") for i in range(20)]
        owner = attempt(client, OWNER, "admin")

    statuses = [r.status_code for r in guesses]
    assert statuses[:5] == [401] * 5  # a few typos cost nothing
    assert set(statuses) == {401, 429} and statuses.count(401) < 10  # then the attacker is slowed down
    assert all(retry_after(r) for r in guesses if r.status_code == 429)
    assert owner.status_code == 200, owner.text  # the owner, from their own address, is not


def test_failures_for_one_account_do_not_block_another_from_the_same_address(
    settings: Settings, users: dict[str, str]
) -> None:
    with console_at_addresses(settings) as client:
        typos = [attempt(client, ATTACKER, "staff", f"wrong-{i}-xxxxxxxx") for i in range(12)]
        colleague = attempt(client, ATTACKER, "supervisor")
        another = attempt(client, ATTACKER, "inspector")

    assert {r.status_code for r in typos} == {401, 429}
    assert colleague.status_code == 200, colleague.text
    assert another.status_code == 200, another.text


def test_back_off_doubles_up_to_its_cap_and_the_right_password_works_once_it_has_passed(
    settings: Settings, users: dict[str, str]
) -> None:
    clock = Clock()
    with console_at_addresses(settings, clock) as client:
        free = [attempt(client, ATTACKER, "admin", f"guess-{i}-xxxxxxx").status_code for i in range(5)]
        waits = []
        for i in range(12):
            assert attempt(client, ATTACKER, "admin", f"again-{i}-xxxxxxx").status_code == 401
            waits.append(retry_after(attempt(client, ATTACKER, "admin", "another-guess-xx")))
            clock.now += waits[-1]
        assert attempt(client, ATTACKER, "admin", "one-more-guess-x").status_code == 401
        wait = retry_after(attempt(client, ATTACKER, "admin"))  # not even the right password now
        clock.now += wait - 1
        still = attempt(client, ATTACKER, "admin")
        clock.now += 1
        after = attempt(client, ATTACKER, "admin")
        typo_afterwards = attempt(client, ATTACKER, "admin", "a-typo-later-xxx")

    assert free == [401] * 5
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]  # doubling, capped at 5 minutes
    assert wait == 300 and retry_after(still) == 1
    assert after.status_code == 200, after.text
    assert typo_afterwards.status_code == 401  # the success started the pair afresh


def test_spraying_many_accounts_from_one_address_is_limited_but_known_users_get_in(
    settings: Settings, users: dict[str, str]
) -> None:
    clock = Clock()
    limit = LoginThrottle.ADDRESS_MAX_FAILURES
    with console_at_addresses(settings, clock) as client:
        known = attempt(client, ATTACKER, "supervisor")  # has logged in from this address before
        sprayed = [
            attempt(client, ATTACKER, f"user{i // 5}", f"spray-{i}-xxxxxxx").status_code
            for i in range(limit + 5)
        ]
        blocked = attempt(client, ATTACKER, "inspector")  # right password, never in from here
        known_again = attempt(client, ATTACKER, "supervisor")
        elsewhere = attempt(client, OWNER, "inspector")
        clock.now += retry_after(blocked)
        later = attempt(client, ATTACKER, "inspector")

    assert known.status_code == 200
    assert sprayed == [401] * limit + [429] * 5
    assert retry_after(blocked) <= LoginThrottle.ADDRESS_WINDOW_S
    assert known_again.status_code == 200, known_again.text
    assert elsewhere.status_code == 200
    assert later.status_code == 200, later.text
