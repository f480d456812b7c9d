"""The HTTP gateway: WorkTool's five callbacks in, raw records to Kafka, an answer in milliseconds.

    POST /worktool/callback/{message|result|qrcode|online|offline}?robotId=ID   (JSON or form body)
    GET  /healthz
    GET  /metrics

A callback is validated, wrapped into a RawRecord (kind, robot_id, received_at stamped here, the body
as received) and produced to the raw topic; `{"code":0,...}` is answered only once the broker
acknowledged it, or once it is fsync'd in the local spool when the broker cannot take it. WorkTool
never retries, so every error answer loses a message: malformed input gets a 4xx *and* its bytes go to
the dead-letter topic; only "neither broker nor disk took it" is a 503.

Acceptance follows the limits every later stage agrees on (worktool.settings.RecordLimits): a 200 means
the record can be processed and stored all the way down. Ids and names are bounded, bodies nested too
deep are refused, and so is a body whose encoded raw record would exceed `raw_record_bytes` (form and
multipart values can grow when re-encoded as JSON).

The callback URLs are served as a plain ASGI handler in front of FastAPI (`GatewayAPI.__call__`): a
POST to one of them never enters FastAPI's middleware, router, Request or Response objects; every other
request (other methods, /healthz, /metrics, unknown paths) goes to FastAPI as before. The same handler is
also registered as plain Starlette routes, the path taken when the fast path is off (`fast_path=False`),
so tests can show both give the same answers. Bodies are parsed by hand with orjson and the raw record
is serialised in one orjson call (measured: docs/architecture.md, Gateway; benchmarks/README.md).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import metrics
from gateway.auth import MetricsAuth, WebhookAuth
from gateway.health import HealthChecker
from gateway.producer import Publisher, SpoolUnavailable
from gateway.sequence import Sequencer, Stamp
from worktool.models import (
    NAME_FIELDS,
    WEBHOOK_KINDS,
    DlqRecord,
    GatewaySeq,
    MessageCallback,
    ResultCallback,
    body_limit_problems,
    iso,
    raw_record_key,
    robot_id_problem,
    summarize_errors,
    utc_now,
)
from worktool.settings import RecordLimits, Settings

log = logging.getLogger(__name__)

JSON = "application/json"
SUCCESS = b'{"code":0,"message":"success","data":{}}'
# online/offline bodies are undocumented: anything goes. The others must match their model.
SCHEMAS: dict[str, type[BaseModel]] = {
    "message": MessageCallback,
    "result": ResultCallback,
    "qrcode": ResultCallback,
}
MAX_FORM_FIELDS = 1000
# robotId and its problem by query string: a gateway serves a few robots, each with one callback URL.
ROBOT_CACHE_SIZE = 4096
OVERSIZE_DLQ_PREFIX = 64 * 1024  # of a body over the limit, only this much goes to the DLQ


class Rejected(Exception):
    """Bad input: answered with `status` and sent to the DLQ."""

    def __init__(self, status: int, reason: str, message: str, errors: list[Any] | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason  # low-cardinality metrics label
        self.message = message
        self.errors = errors or []


CALLBACK_PATHS = {f"/worktool/callback/{kind}": kind for kind in WEBHOOK_KINDS}


def error_body(message: str, errors: list[Any] | None = None) -> bytes:
    return orjson.dumps({"code": -1, "message": message, "data": {"errors": errors or []}})


def error_response(status: int, message: str, errors: list[Any] | None = None) -> Response:
    return Response(error_body(message, errors), status_code=status, media_type=JSON)


# An answer of the callback handler: status and JSON body (sent as Starlette's Response(..., media_type=
# JSON) would send it: content-length, then content-type).
Answer = tuple[int, bytes]
SUCCESS_HEADERS = [(b"content-length", str(len(SUCCESS)).encode()), (b"content-type", JSON.encode())]


def answer_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    if body is SUCCESS:
        return SUCCESS_HEADERS
    return [(b"content-length", str(len(body)).encode()), (b"content-type", JSON.encode())]


# ---------------------------------------------------------------------------------------------
# Reading and decoding bodies


class _TooLarge(Exception):
    def __init__(self, size: int, prefix: bytes):
        self.size = size
        self.prefix = prefix


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes whether or not Content-Length announced it. Reads the
    ASGI messages as Starlette's Request.stream() does (ClientDisconnect on a disconnect), without its
    async generator."""
    declared = headers.get("content-length", "")
    # Announced too large: stop after the first chunk (kept for the DLQ), never read the rest.
    announced = int(declared) if declared.isdigit() else 0
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        last = not message.get("more_body", False)
        if chunk or last:
            size += len(chunk)
            chunks.append(chunk)
            if size > limit or announced > limit:
                raise _TooLarge(max(size, announced), b"".join(chunks)[:OVERSIZE_DLQ_PREFIX])
        if last:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def robot_id_of(query_string: bytes) -> str:
    """`robotId` from the query string (the only parameter; cheaper than building QueryParams)."""
    for part in query_string.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"robotId":
            return unquote_plus(value.decode("latin-1"), encoding="utf-8", errors="replace").strip()
    return ""


def _add_field(body: dict[str, Any], key: str, value: Any) -> None:
    # A repeated form field becomes a list (e.g. successList=a&successList=b).
    if key in body:
        existing = body[key]
        body[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
    else:
        body[key] = value


def parse_urlencoded(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict")
    except UnicodeDecodeError as e:
        raise Rejected(400, "bad_form", f"form body is not UTF-8: {e.reason} at byte {e.start}") from e
    except ValueError as e:
        raise Rejected(400, "bad_form", f"invalid form body: {e}") from e
    body: dict[str, Any] = {}
    for key, value in pairs:
        _add_field(body, key, value)
    return body


async def parse_multipart(headers: Headers, raw: bytes, limit: int) -> dict[str, Any]:
    async def stream() -> AsyncIterator[bytes]:
        yield raw

    parser = MultiPartParser(headers, stream(), max_fields=MAX_FORM_FIELDS, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise Rejected(400, "bad_form", f"invalid multipart body: {e.message}") from e
    body: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):  # a field sent as a file part: keep its text
            value = (await value.read()).decode("utf-8", "replace")
        _add_field(body, key, value)
    await form.close()
    return body


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise Rejected(400, "empty_body", "empty body: expected a JSON object or a form")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Rejected(400, "invalid_json", f"body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise Rejected(400, "invalid_json", f"body must be a JSON object, not {type(body).__name__}")
    return body


async def decode_body(kind: str, raw: bytes, headers: Headers, limit: int) -> dict[str, Any]:
    """The body as a dict, as WorkTool sent it (form values stay strings; nothing is coerced)."""
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        return parse_urlencoded(raw)
    if media_type == "multipart/form-data":
        return await parse_multipart(headers, raw, limit)
    if kind in SCHEMAS:
        # JSON whatever the declared type: senders label JSON as text/plain too.
        return parse_json_object(raw)
    # online/offline: undocumented, so keep whatever came; text becomes {"text": ...}.
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    return body if isinstance(body, dict) else {"text": raw.decode("utf-8", "replace")}


def _flat(body: dict[str, Any]) -> bool:
    for value in body.values():  # noqa: SIM110 (a loop is faster than all() with a generator)
        if isinstance(value, dict | list):
            return False
    return True


def check_limits(kind: str, body: dict[str, Any], limits: RecordLimits) -> None:
    names = NAME_FIELDS.get(kind, ())
    if _flat(body) and limits.max_json_depth >= 1:  # the common case: depth 1, only the names to check
        for name in names:
            value = body.get(name)
            if isinstance(value, str) and len(value) > limits.max_name_chars:
                break
        else:
            return
    if problems := body_limit_problems(kind, body, limits):
        raise Rejected(422, "over_limit", f"invalid {kind} callback: {'; '.join(problems)}")


def encode_record(
    kind: str,
    robot_id: str,
    body: dict[str, Any],
    received_at: datetime,
    limits: RecordLimits,
    seq: Stamp | GatewaySeq | None = None,
) -> tuple[str, bytes]:
    """Key and value of the raw record; refused if it cannot be written or is larger than the record
    size every stage is built for. The bytes are exactly `RawRecord(...).to_json()` (checked by
    tests/gateway/test_gateway_fastpath.py), written in one orjson call: the body is JSON as decoded
    (orjson or form strings), so the model's validation and dump would only copy it."""
    # received_at is utc_now(): formatted without iso()'s conversion (the same text for a UTC time)
    at = (
        received_at.isoformat(timespec="milliseconds")[:-6] + "Z"
        if received_at.tzinfo is UTC
        else iso(received_at)
    )
    data: dict[str, Any] = {"kind": kind, "robot_id": robot_id, "received_at": at, "body": body}
    if seq is not None:
        data["seq"] = {"gw": seq.gw, "n": seq.n, "void": seq.void} if seq.void else {"gw": seq.gw, "n": seq.n}
    try:
        value = orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError) as e:
        raise Rejected(422, "unencodable", f"body cannot be stored: {e}") from e
    if len(value) > limits.raw_record_bytes:
        raise Rejected(
            413,
            "too_large",
            f"body encodes to a record of {len(value)} bytes, over the limit of {limits.raw_record_bytes}",
        )
    return raw_record_key(kind, robot_id, body), value


def validate(kind: str, body: dict[str, Any]) -> None:
    schema = SCHEMAS.get(kind)
    if schema is None:
        return
    try:
        schema.__pydantic_validator__.validate_python(body)  # model_validate without its wrapper
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        raise Rejected(
            422, "invalid_fields", f"invalid {kind} callback: {summarize_errors(e)}", errors
        ) from e


# ---------------------------------------------------------------------------------------------


class CallbackHandler:
    """The five webhook endpoints share this; one instance per app."""

    def __init__(self, settings: Settings, publisher: Publisher):
        self.settings = settings
        self.publisher = publisher
        self.limits = settings.limits
        self.auth = WebhookAuth.from_settings(settings)
        self.sequence = Sequencer()  # the loss detector's stamp (gateway/sequence.py)
        self._robots: dict[bytes, tuple[str, str | None]] = {}
        log.info("gateway sequence id %s", self.sequence.boot_id)

    def endpoint(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        """The Starlette route (used when the fast path is off)."""

        async def handle(request: Request) -> Response:
            started = perf_counter()
            status, body = await self.handle(kind, request.scope, request.receive)
            metrics.observe_request(kind, status, perf_counter() - started)
            return Response(body, status_code=status, media_type=JSON)

        return handle

    async def serve(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The fast path: the same answer as `endpoint`, sent as raw ASGI messages. An exception is
        answered as FastAPI's handler in create_app answers it (503 "internal error") and re-raised, as
        Starlette's ServerErrorMiddleware does."""
        started = perf_counter()
        try:
            status, body = await self.handle(kind, scope, receive)
        except Exception as exc:
            log.error("unhandled %s", type(exc).__name__, exc_info=exc)
            body = error_body("internal error")
            await send({"type": "http.response.start", "status": 503, "headers": answer_headers(body)})
            await send({"type": "http.response.body", "body": body})
            raise
        metrics.observe_request(kind, status, perf_counter() - started)
        await send({"type": "http.response.start", "status": status, "headers": answer_headers(body)})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, kind: str, scope: Scope, receive: Receive) -> Answer:
        received_at = utc_now()
        query_string = scope["query_string"]
        robot = self._robots.get(query_string)
        if robot is None:
            robot_id = robot_id_of(query_string)
            robot = (robot_id, robot_id_problem(robot_id, self.limits) if robot_id else None)
            if len(self._robots) >= ROBOT_CACHE_SIZE:
                self._robots.clear()
            self._robots[query_string] = robot
        robot_id, robot_problem = robot
        headers = Headers(raw=scope["headers"])
        if refusal := self.auth.refusal(robot_id, query_string):
            return await self.unauthorized(refusal, kind, robot_id, receive, headers, received_at)
        raw = b""
        try:
            try:
                raw = await read_body(receive, headers, self.settings.max_body_bytes)
            except _TooLarge as e:
                raw = e.prefix
                limit = self.settings.max_body_bytes
                raise Rejected(
                    413, "too_large", f"body of {e.size} bytes exceeds the limit of {limit} bytes"
                ) from e
            if not robot_id:
                raise Rejected(
                    400, "missing_robot_id", "missing robotId query parameter (…/callback/KIND?robotId=ID)"
                )
            if robot_problem:
                raise Rejected(422, "invalid_robot_id", robot_problem)
            body = await decode_body(kind, raw, headers, self.settings.max_body_bytes)
            check_limits(kind, body, self.limits)
            validate(kind, body)
            seq = self.sequence.take()
            try:
                key, value = encode_record(kind, robot_id, body, received_at, self.limits, seq)
            except Exception:
                self.sequence.give_back(seq)
                raise
        except Rejected as e:
            return await self.reject(e, kind, robot_id, raw, received_at)
        except Exception as e:  # a bug in parsing must not lose the bytes either
            log.exception("could not read a %s callback", kind)
            error = Rejected(400, "unreadable", f"unreadable body ({type(e).__name__})")
            return await self.reject(error, kind, robot_id, raw, received_at)
        answer = await self.accept(kind, key, value)
        if answer[0] != 200:
            self.sequence.give_back(seq)  # not acknowledged: nobody should wait for this number
        return answer

    async def accept(self, kind: str, key: str, value: bytes) -> Answer:
        topic = self.settings.topic_raw
        try:
            await self.publisher.publish(topic, key, value)
        except SpoolUnavailable:
            return 503, error_body("temporarily unable to store the callback")
        except Exception:
            # Whatever went wrong on the way to the broker, the spool still keeps the message.
            log.exception("publishing a %s callback failed; spooling it", kind)
            try:
                await self.publisher.spool(topic, key, value)
            except Exception:
                return 503, error_body("temporarily unable to store the callback")
        return 200, SUCCESS

    async def unauthorized(
        self,
        refusal: str,
        kind: str,
        robot_id: str,
        receive: Receive,
        headers: Headers,
        received_at: datetime,
    ) -> Answer:
        """401; the body (never the query string with its token) goes to the DLQ, so that messages of a
        robot registered with a wrong token can still be recovered."""
        try:
            raw = await read_body(receive, headers, self.settings.max_body_bytes)
        except _TooLarge as e:
            raw = e.prefix
        error = Rejected(401, "unauthorized", refusal)
        status, body = await self.reject(error, kind, robot_id, raw, received_at)
        # The caller learns nothing about which robots exist.
        return (401, error_body("unauthorized")) if status == 401 else (status, body)

    async def reject(self, error: Rejected, kind: str, robot_id: str, raw: bytes, at: datetime) -> Answer:
        metrics.DLQ.labels(error.reason).inc()
        value = self._dlq_record(error.message, kind, robot_id, raw, at)
        try:
            await self.publisher.publish(
                self.settings.topic_dlq, f"robot:{robot_id}" if robot_id else None, value
            )
        except Exception as e:  # the answer stays the same; the record is lost, say so
            log.error("dead-letter record for a %s callback lost: %r", kind, e)
        return error.status, error_body(error.message, error.errors)

    def _dlq_record(self, reason: str, kind: str, robot_id: str, raw: bytes, at: datetime) -> bytes:
        return DlqRecord(
            stage="gateway",
            reason=reason,
            received_at=at,
            robot_id=robot_id or None,
            kind=kind,
            raw=raw.decode("utf-8", "replace"),
        ).to_json_within(self.limits.record_max_bytes)


# ---------------------------------------------------------------------------------------------


async def health_report(health: HealthChecker, publisher: Publisher) -> tuple[bool, dict[str, Any]]:
    ready, components = await health.report()
    # Not ready is "degraded": the webhook still answers, to the broker or to the spool.
    body: dict[str, Any] = {
        "status": "ok" if ready else "degraded",
        "components": components,
        "spool": {"spooling": publisher.spooling, "depth": publisher.spool_depth},
    }
    if (processes := health.processes()) is not None:
        body["processes"] = processes
    if health.notices:  # worth a look, not a failure (e.g. the dataflow re-read a recreated topic)
        body["notices"] = health.notices
    return ready, body


class GatewayAPI(FastAPI):
    """FastAPI with the callback URLs served in front of it: a POST to /worktool/callback/KIND goes
    straight to `CallbackHandler.serve` (no middleware, router, Request or Response objects: about a
    third of the CPU of a request, benchmarks/README.md "Webhook"); everything else, including other
    methods on those URLs (405), goes through FastAPI. `fast_path = False` sends the callbacks through
    FastAPI's router too, to the same handler (tests compare both)."""

    callbacks: CallbackHandler
    fast_path: bool = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and self.fast_path
            and not scope.get("root_path")
            and (kind := CALLBACK_PATHS.get(scope["path"])) is not None
        ):
            await self.callbacks.serve(kind, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, producer: Publisher | None = None) -> GatewayAPI:
    """The gateway app. Without `producer` the app creates, starts and stops its own Publisher in its
    lifespan; a Publisher passed in belongs to the caller (tests start and stop it themselves)."""
    publisher = producer if producer is not None else Publisher(settings)
    health = HealthChecker(
        publisher.probe, settings.database_url, settings.redis_url, stack_info=settings.stack_info_path
    )
    metrics_auth = MetricsAuth(settings.metrics_token)
    handler = CallbackHandler(settings, publisher)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if producer is None:
            await publisher.start()
        try:
            yield
        finally:
            await health.aclose()
            if producer is None:
                await publisher.stop()

    app = GatewayAPI(
        title="WorkTool gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI's OpenTelemetry hooks check their providers on every request; /metrics covers us.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.callbacks = handler
    for kind in WEBHOOK_KINDS:
        app.add_route(f"/worktool/callback/{kind}", handler.endpoint(kind), methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> Response:
        ready, body = await health_report(health, publisher)
        return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type=JSON)

    @app.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        if not metrics_auth.allows(request.headers.get("authorization")):
            return Response(
                b"unauthorized\n", status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
            )
        metrics.SPOOL_DEPTH.set(publisher.spool_depth)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def request_error(_request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid request", orjson.loads(orjson.dumps(exc.errors(), default=str)))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> Response:
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return error_response(503, "internal error")

    return app
