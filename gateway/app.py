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

The callback routes are plain Starlette routes inside the FastAPI app, and bodies are parsed by hand
with orjson: FastAPI's request machinery and body parameters cost about a third of the throughput
(measured: docs/architecture.md, Gateway).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
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
from starlette.requests import Request
from starlette.responses import Response

from gateway import metrics
from gateway.auth import MetricsAuth, WebhookAuth
from gateway.health import HealthChecker
from gateway.producer import Publisher, SpoolUnavailable
from gateway.sequence import Sequencer
from worktool.models import (
    WEBHOOK_KINDS,
    DlqRecord,
    GatewaySeq,
    MessageCallback,
    RawRecord,
    ResultCallback,
    body_limit_problems,
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
OVERSIZE_DLQ_PREFIX = 64 * 1024  # of a body over the limit, only this much goes to the DLQ


class Rejected(Exception):
    """Bad input: answered with `status` and sent to the DLQ."""

    def __init__(self, status: int, reason: str, message: str, errors: list[Any] | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason  # low-cardinality metrics label
        self.message = message
        self.errors = errors or []


def error_response(status: int, message: str, errors: list[Any] | None = None) -> Response:
    body = {"code": -1, "message": message, "data": {"errors": errors or []}}
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


# ---------------------------------------------------------------------------------------------
# Reading and decoding bodies


class _TooLarge(Exception):
    def __init__(self, size: int, prefix: bytes):
        self.size = size
        self.prefix = prefix


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes whether or not Content-Length announced it."""
    declared = request.headers.get("content-length", "")
    # Announced too large: stop after the first chunk (kept for the DLQ), never read the rest.
    announced = int(declared) if declared.isdigit() else 0
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks.append(chunk)
        if size > limit or announced > limit:
            raise _TooLarge(max(size, announced), b"".join(chunks)[:OVERSIZE_DLQ_PREFIX])
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


def check_limits(kind: str, body: dict[str, Any], limits: RecordLimits) -> None:
    if problems := body_limit_problems(kind, body, limits):
        raise Rejected(422, "over_limit", f"invalid {kind} callback: {'; '.join(problems)}")


def encode_record(
    kind: str,
    robot_id: str,
    body: dict[str, Any],
    received_at: datetime,
    limits: RecordLimits,
    seq: GatewaySeq | None = None,
) -> tuple[str, bytes]:
    """Key and value of the raw record; refused if it cannot be written or is larger than the record
    size every stage is built for."""
    try:
        record = RawRecord(kind=kind, robot_id=robot_id, received_at=received_at, body=body, seq=seq)  # type: ignore[arg-type]
        value = record.to_json()
    except (ValidationError, TypeError, orjson.JSONEncodeError) as e:
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
        schema.model_validate(body)
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
        log.info("gateway sequence id %s", self.sequence.boot_id)

    def endpoint(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            started = perf_counter()
            response = await self.handle(kind, request)
            metrics.observe_request(kind, response.status_code, perf_counter() - started)
            return response

        return handle

    async def handle(self, kind: str, request: Request) -> Response:
        received_at = utc_now()
        robot_id = robot_id_of(request.scope["query_string"])
        if refusal := self.auth.refusal(robot_id, request.scope["query_string"]):
            return await self.unauthorized(refusal, kind, robot_id, request, received_at)
        raw = b""
        try:
            try:
                raw = await read_body(request, self.settings.max_body_bytes)
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
            if problem := robot_id_problem(robot_id, self.limits):
                raise Rejected(422, "invalid_robot_id", problem)
            body = await decode_body(kind, raw, request.headers, self.settings.max_body_bytes)
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
        response = await self.accept(kind, key, value)
        if response.status_code != 200:
            self.sequence.give_back(seq)  # not acknowledged: nobody should wait for this number
        return response

    async def accept(self, kind: str, key: str, value: bytes) -> Response:
        topic = self.settings.topic_raw
        try:
            await self.publisher.publish(topic, key, value)
        except SpoolUnavailable:
            return error_response(503, "temporarily unable to store the callback")
        except Exception:
            # Whatever went wrong on the way to the broker, the spool still keeps the message.
            log.exception("publishing a %s callback failed; spooling it", kind)
            try:
                await self.publisher.spool(topic, key, value)
            except Exception:
                return error_response(503, "temporarily unable to store the callback")
        return Response(SUCCESS, media_type=JSON)

    async def unauthorized(
        self, refusal: str, kind: str, robot_id: str, request: Request, received_at: datetime
    ) -> Response:
        """401; the body (never the query string with its token) goes to the DLQ, so that messages of a
        robot registered with a wrong token can still be recovered."""
        try:
            raw = await read_body(request, self.settings.max_body_bytes)
        except _TooLarge as e:
            raw = e.prefix
        error = Rejected(401, "unauthorized", refusal)
        response = await self.reject(error, kind, robot_id, raw, received_at)
        # The caller learns nothing about which robots exist.
        return error_response(401, "unauthorized") if response.status_code == 401 else response

    async def reject(self, error: Rejected, kind: str, robot_id: str, raw: bytes, at: datetime) -> Response:
        metrics.DLQ.labels(error.reason).inc()
        value = self._dlq_record(error.message, kind, robot_id, raw, at)
        try:
            await self.publisher.publish(
                self.settings.topic_dlq, f"robot:{robot_id}" if robot_id else None, value
            )
        except Exception as e:  # the answer stays the same; the record is lost, say so
            log.error("dead-letter record for a %s callback lost: %r", kind, e)
        return error_response(error.status, error.message, error.errors)

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


def create_app(settings: Settings, producer: Publisher | None = None) -> FastAPI:
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

    app = FastAPI(
        title="WorkTool gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI's OpenTelemetry hooks check their providers on every request; /metrics covers us.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
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
