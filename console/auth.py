"""Authentication and authorization of /api/*, the login, and account management.

Every /api route but the login needs `Authorization: Bearer <token>`, where the token is either
- an access token from `POST /api/auth/login` (console/tokens.py): its account must still exist, be
  enabled and have the role the token names (a changed role or a disabled account takes effect at once);
- WORKTOOL_API_TOKEN: the service account `api-token` with the role WORKTOOL_API_TOKEN_ROLE, for scripts.
No or a wrong or expired token is 401; a role without the route's permission (console/permissions.py) is
403.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from console import accounts, audit, tokens
from console.accounts import Account, AccountDirectory, AccountExists, Password, StoredAccount, Username
from console.common import Problem, client_addr, connection, line_text, pool_of
from console.permissions import Permission, Role, allows, permissions_of

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = "api-token"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling."""

    name: str
    role: Role
    kind: Literal["user", "service"]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


_bearer = HTTPBearer(
    auto_error=False, description="An access token from POST /api/auth/login, or WORKTOOL_API_TOKEN."
)


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    state = request.app.state
    if credentials is None or not credentials.credentials:
        raise unauthorized("missing bearer token")
    given = credentials.credentials
    service_token: bytes | None = state.api_token
    if service_token is not None and hmac.compare_digest(given.encode(), service_token):
        return Principal(SERVICE_ACCOUNT, state.settings.api_token_role, "service")
    try:
        claims = tokens.decode(state.jwt_secret, given)
    except tokens.InvalidToken as e:
        raise unauthorized(str(e)) from None
    directory: AccountDirectory = state.accounts
    async with connection(pool_of(request), "cannot read console_users") as conn:
        account = await directory.lookup(conn, claims.username)
    if account is None or account.disabled:
        raise unauthorized("the account no longer exists or is disabled")
    if account.role != claims.role:
        raise unauthorized("the account's role has changed: log in again")
    return Principal(account.username, account.role, "user")


def permission_check(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency function: the caller, or 401 / 403 unless its role has `permission`."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not allows(principal.role, permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"the role {principal.role} may not {permission.value}"
            )
        return principal

    return check


def require(permission: Permission) -> Any:
    """`Depends` of permission_check, for a route's parameter."""
    return Depends(permission_check(permission))


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing, wrong or expired bearer token."},
    403: {"model": Problem, "description": "The caller's role lacks the permission."},
    503: {"model": Problem, "description": "The database (or the broker) did not answer."},
}

# ---------------------------------------------------------------------------------------------
# Login


@dataclass
class _PairFailures:
    count: int
    last_at: float


class LoginThrottle:
    """Slows password guessing down without letting anyone lock out an account, or every user behind
    one address (docs/operations.md, "Login throttling").

    - Per (account, client address) together: the first FREE_FAILURES failures cost nothing; after the
      n-th the pair waits BASE_DELAY_S * 2**(n - FREE_FAILURES - 1), at most MAX_DELAY_S, before its next
      attempt is even checked (429 with Retry-After). A successful login, or FORGET_S without a failure,
      clears the pair. So failures for `admin` from one address never slow `admin` down from another,
      nor another account from the same address.
    - Per client address, looser, against spraying many accounts from one address: ADDRESS_MAX_FAILURES
      failures within ADDRESS_WINDOW_S stop its logins until the oldest leaves the window, except for an
      account that has logged in from that address before (within KNOWN_S): its owner still gets in.
      One account's back-off alone never reaches this limit.

    An attempt counts as a failure from the moment it is let through until its password is found right
    (`begin` ... `succeeded`), so concurrent guesses cannot slip past the back-off. State is in memory,
    per console process, bounded to MAX_ENTRIES keys of each kind (oldest forgotten first); a restart
    forgets it.
    """

    FREE_FAILURES = 5
    BASE_DELAY_S = 1.0
    MAX_DELAY_S = 300.0
    FORGET_S = 3600.0
    ADDRESS_MAX_FAILURES = 30
    ADDRESS_WINDOW_S = 600.0
    KNOWN_S = 30 * 86400.0
    MAX_ENTRIES = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pairs: OrderedDict[tuple[str, str], _PairFailures] = OrderedDict()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    def delay_after(self, failures: int) -> float:
        """How long a pair waits after its `failures`-th failure."""
        if failures <= self.FREE_FAILURES:
            return 0.0
        return min(self.MAX_DELAY_S, self.BASE_DELAY_S * 2.0 ** min(failures - self.FREE_FAILURES - 1, 62))

    def begin(self, account: str, address: str) -> int | None:
        """Seconds to wait before this login may be tried (then nothing is recorded), or None: the attempt
        is let through and counted as a failure until `succeeded` or `cancelled`."""
        now = self._clock()
        pair = self._pair((account, address), now)
        waits = [pair.last_at + self.delay_after(pair.count) - now] if pair is not None else []
        recent = self._address_failures(address, now)
        if len(recent) >= self.ADDRESS_MAX_FAILURES and not self._is_known((account, address), now):
            waits.append(recent[0] + self.ADDRESS_WINDOW_S - now)
        if (wait := max(waits, default=0.0)) > 0:
            return max(1, math.ceil(wait))
        self._record_failure((account, address), now)
        return None

    def succeeded(self, account: str, address: str) -> None:
        """The password was right: the pair starts afresh and is known from now on."""
        self._pairs.pop((account, address), None)
        self._uncount(address)
        self._remember(self._known, (account, address), self._clock())

    def cancelled(self, account: str, address: str) -> None:
        """The attempt could not be checked (the database did not answer): it does not count."""
        if (pair := self._pairs.get((account, address))) is not None:
            pair.count -= 1
            if pair.count <= 0:
                del self._pairs[(account, address)]
        self._uncount(address)

    def _pair(self, key: tuple[str, str], now: float) -> _PairFailures | None:
        pair = self._pairs.get(key)
        if pair is not None and now - pair.last_at >= self.FORGET_S:
            del self._pairs[key]
            return None
        return pair

    def _address_failures(self, address: str, now: float) -> deque[float]:
        times = self._addresses.get(address) or deque(maxlen=self.ADDRESS_MAX_FAILURES)
        while times and times[0] <= now - self.ADDRESS_WINDOW_S:
            times.popleft()
        return times

    def _is_known(self, key: tuple[str, str], now: float) -> bool:
        at = self._known.get(key)
        return at is not None and now - at < self.KNOWN_S

    def _record_failure(self, key: tuple[str, str], now: float) -> None:
        pair = self._pairs.get(key) or _PairFailures(0, now)
        pair.count += 1
        pair.last_at = now
        self._remember(self._pairs, key, pair)
        times = self._address_failures(key[1], now)
        times.append(now)
        self._remember(self._addresses, key[1], times)

    def _uncount(self, address: str) -> None:
        if times := self._addresses.get(address):
            times.pop()

    def _remember(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.MAX_ENTRIES:
            table.popitem(last=False)


LoginName = line_text(64, min_length=1)
LoginPassword = line_text(accounts.MAX_PASSWORD_CHARS, min_length=1)


class LoginRequest(BaseModel):
    username: LoginName
    password: LoginPassword = Field(repr=False)


class LoginResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires; log in again then.")
    role: Role


class Me(BaseModel):
    username: str
    role: Role
    kind: Literal["user", "service"]
    permissions: list[str]


auth_router = APIRouter(prefix="/api/auth", tags=["auth"])


@auth_router.post(
    "/login",
    responses={
        401: {"model": Problem, "description": "Wrong username or password, or a disabled account."},
        429: {"model": Problem, "description": "Too many failed logins; retry after Retry-After s."},
        503: {"model": Problem, "description": "The database did not answer."},
    },
)
async def login(body: LoginRequest, request: Request) -> LoginResponse:
    """Exchange a username and password for a short-lived access token."""
    state = request.app.state
    throttle: LoginThrottle = state.login_throttle
    address = client_addr(request) or "unknown"
    if (wait := throttle.begin(body.username, address)) is not None:
        log.warning("console login for %r from %s throttled for %d s", body.username, address, wait)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins: retry later",
            headers={"Retry-After": str(wait)},
        )
    try:
        async with connection(pool_of(request), "cannot read console_users") as conn:
            account = await state.accounts.lookup(conn, body.username)
        hash_ = account.password_hash if account else None
        matches = await asyncio.to_thread(accounts.verify_password, hash_, body.password)
    except BaseException:
        throttle.cancelled(body.username, address)
        raise
    if not matches or account is None or account.disabled:
        log.warning("failed console login for %r from %s", body.username, address)
        raise unauthorized("wrong username or password")
    throttle.succeeded(body.username, address)
    ttl = state.settings.jwt_ttl_s
    token = tokens.issue(state.jwt_secret, account.username, account.role, ttl)
    log.info("console login of %s (%s) from %s", account.username, account.role, client_addr(request))
    return LoginResponse(access_token=token, expires_in=ttl, role=account.role)


@auth_router.get("/me", responses=AUTH_ERRORS)
async def me(principal: Annotated[Principal, Depends(current_principal)]) -> Me:
    """The caller's account, role and permissions (what the page may offer)."""
    return Me(
        username=principal.name,
        role=principal.role,
        kind=principal.kind,
        permissions=permissions_of(principal.role),
    )


# ---------------------------------------------------------------------------------------------
# Accounts


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    role: Role
    password: Password = Field(repr=False)


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    password: Password | None = Field(default=None, repr=False)
    disabled: bool | None = None


def audit_after(account: StoredAccount, *, password_changed: bool) -> dict[str, Any]:
    return {**account.audit_state(), "password_changed": password_changed}


users_router = APIRouter(prefix="/api/users", tags=["users"])
ManageUsers = Annotated[Principal, require(Permission.MANAGE_USERS)]
UsernamePath = Annotated[line_text(64, min_length=1), Path()]


@users_router.get("", responses=AUTH_ERRORS)
async def list_users(_: ManageUsers, request: Request) -> list[Account]:
    """Every account: the users file's, then the table's."""
    async with connection(pool_of(request), "cannot read console_users") as conn:
        stored = await accounts.list_accounts(conn)
    file_accounts = request.app.state.accounts.file_accounts.values()
    return [a.public() for a in [*file_accounts, *stored]]


@users_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={**AUTH_ERRORS, 409: {"model": Problem, "description": "The name is taken."}},
)
async def create_user(body: NewUser, principal: ManageUsers, request: Request) -> Account:
    """Create an account in console_users (audited, without the password)."""
    if body.username in request.app.state.accounts.file_accounts:
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {body.username} is defined in the users file")
    password_hash = await asyncio.to_thread(accounts.hash_password, body.password)
    async with connection(pool_of(request), "cannot write console_users") as conn, conn.transaction():
        try:
            created = await accounts.insert_account(
                conn, body.username, body.role, password_hash, created_by=principal.name
            )
        except AccountExists as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        await audit.record(conn, _user_entry(principal, request, "user.create", None, created, True))
    log.info("console user %s (%s) created by %s", created.username, created.role, principal.name)
    return created.public()


@users_router.patch(
    "/{username}",
    responses={
        **AUTH_ERRORS,
        404: {"model": Problem, "description": "No such account in the table."},
        409: {"model": Problem, "description": "The account is defined in the users file."},
    },
)
async def change_user(
    username: UsernamePath, body: UserChange, principal: ManageUsers, request: Request
) -> Account:
    """Change an account's role, password or disabled flag (audited, without the password)."""
    if username in request.app.state.accounts.file_accounts:
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {username} is defined in the users file")
    if username == principal.name and (body.disabled or body.role not in (None, "admin")):
        # An admin locking themselves out could leave nobody able to manage accounts.
        raise HTTPException(status.HTTP_409_CONFLICT, "an admin cannot disable or demote their own account")
    password_hash = None
    if body.password is not None:
        password_hash = await asyncio.to_thread(accounts.hash_password, body.password)
    async with connection(pool_of(request), "cannot write console_users") as conn, conn.transaction():
        before = await accounts.fetch_account(conn, username)
        if before is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {username} does not exist")
        after = await accounts.update_account(
            conn, username, role=body.role, password_hash=password_hash, disabled=body.disabled
        )
        assert after is not None
        entry = _user_entry(principal, request, "user.update", before, after, password_hash is not None)
        await audit.record(conn, entry)
    log.info("console user %s changed by %s", username, principal.name)
    return after.public()


def _user_entry(
    principal: Principal,
    request: Request,
    action: Literal["user.create", "user.update"],
    before: StoredAccount | None,
    after: StoredAccount,
    password_changed: bool,
) -> audit.AuditEntry:
    return audit.AuditEntry(
        actor=principal.name,
        actor_role=principal.role,
        action=action,
        target_type="user",
        target_id=after.username,
        client_addr=client_addr(request),
        before=None if before is None else before.audit_state(),
        after=audit_after(after, password_changed=password_changed),
    )


def local_client() -> str:
    """Where the users command runs, as the audit log's client address."""
    return f"local:{socket.gethostname()}"
