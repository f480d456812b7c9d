"""Runtime settings from the environment (one home for every env var the process reads).

`RecordLimits` is the one place where the limits every stage must agree on are derived: what the gateway
accepts (body size, id and name lengths, JSON depth) and, from that, the largest record any stage writes
to Kafka, which sets `message.max.bytes` of every producer and the topics. Settings refuse a combination
that some part below us cannot hold (a clear error at start-up instead of a crash loop later).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The console's roles; what each may do is console/permissions.py.
ConsoleRole = Literal["admin", "supervisor", "staff", "inspector"]

# Ceilings of the parts below us.
ORJSON_MAX_DEPTH = 254  # orjson.dumps refuses deeper nesting ("Recursion limit reached")
POSTGRES_MAX_INDEX_ROW_BYTES = 2704  # btree entries on 8 kB pages ("index row size exceeds ...")
UTF8_MAX_BYTES = 4  # per character
JSON_ESCAPE_MAX_BYTES = 6  # a control character becomes \u00XX
# librdkafka consumers refuse a fetch response above receive.message.max.bytes (default 100 MB);
# one record must fit with room for the response framing.
CONSUMER_RECEIVE_MAX_BYTES = 100_000_000
# Around a record value in a produce request: key, headers, record and batch framing.
KAFKA_FRAMING_BYTES = 64 * 1024
# Fixed-size parts of a monitor event next to the body's text (ids, names, flags, numbers).
EVENT_OVERHEAD_BYTES = 64 * 1024

# Secrets: the shortest accepted (tokens), and what a template's placeholder looks like (compared
# without case, spaces, dashes and underscores): start-up refuses them (Settings.weak_secrets).
MIN_SECRET_CHARS = 16
MIN_WEBHOOK_TOKEN_CHARS = 12  # they sit in the callback URLs registered with WorkTool
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "changethis", "change", "replaceme", "placeholder", "secret", "password", "passwd",
     "token", "example", "default", "todo", "fixme", "xxx", "xxxx", "admin", "test", "none", "null"}
)  # fmt: skip
_PLACEHOLDER_MARKERS = ("changeme", "replaceme", "placeholder", "yourtoken", "yoursecret", "yourpassword")


def is_placeholder(value: str) -> bool:
    folded = re.sub(r"[\s_\-.]", "", value).lower()
    return folded in PLACEHOLDER_SECRETS or any(marker in folded for marker in _PLACEHOLDER_MARKERS)


@dataclass(frozen=True)
class RecordLimits:
    """What the gateway accepts, and the record sizes that follow from it.

    Sizes, from the body up (each bound holds by construction, the gateway checks the first one):
    - raw record: the gateway refuses a body whose encoded RawRecord exceeds `raw_record_bytes`
      (the body limit plus the envelope), whatever the body's encoding was (form and multipart values
      can grow when re-encoded as JSON).
    - monitor event: text, raw_text and mentions all come from the body's text; raw_text repeats the
      text when rawSpoken is empty and the mentions' quoting at most doubles what they were cut from,
      so an event is at most 4 raw records plus fixed-size fields.
    - DLQ record: its `raw` is the original bytes, JSON-escaped; DlqRecord.to_json_within truncates it
      to `record_max_bytes` in the rare case it would not fit (flagged `truncated`).
    """

    max_body_bytes: int
    max_id_chars: int
    max_name_chars: int
    max_json_depth: int

    @property
    def raw_record_bytes(self) -> int:
        envelope = 1024 + JSON_ESCAPE_MAX_BYTES * self.max_id_chars  # kind, robot_id, received_at, keys
        return self.max_body_bytes + envelope

    @property
    def record_max_bytes(self) -> int:
        """The largest value any stage writes to any topic."""
        return 4 * self.raw_record_bytes + EVENT_OVERHEAD_BYTES

    @property
    def message_max_bytes(self) -> int:
        """`message.max.bytes` of every producer and `max.message.bytes` of every topic."""
        return self.record_max_bytes + KAFKA_FRAMING_BYTES

    @property
    def max_index_key_bytes(self) -> int:
        """Worst-case key of session_robots (session_id, robot_id): a private session id is
        "private:<robot>:<sender>", so the key holds the robot id twice and a name once."""
        chars = len("private::") + 2 * self.max_id_chars + self.max_name_chars
        return chars * UTF8_MAX_BYTES + 32  # + tuple and varlena headers

    def problems(self) -> list[str]:
        """Why these limits cannot work, or [] when they can."""
        out = []
        for name in ("max_body_bytes", "max_id_chars", "max_name_chars", "max_json_depth"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1")
        if self.max_json_depth + 1 > ORJSON_MAX_DEPTH:
            out.append(
                f"max_json_depth {self.max_json_depth}: a raw record nests the body one level deeper and "
                f"orjson writes at most {ORJSON_MAX_DEPTH} levels"
            )
        if self.max_index_key_bytes > POSTGRES_MAX_INDEX_ROW_BYTES:
            out.append(
                f"max_id_chars {self.max_id_chars} and max_name_chars {self.max_name_chars}: a session key "
                f"could need {self.max_index_key_bytes} bytes, PostgreSQL indexes hold at most "
                f"{POSTGRES_MAX_INDEX_ROW_BYTES}"
            )
        if self.message_max_bytes > CONSUMER_RECEIVE_MAX_BYTES - KAFKA_FRAMING_BYTES:
            out.append(
                f"max_body_bytes {self.max_body_bytes}: records of up to {self.message_max_bytes} bytes "
                f"would follow, consumers receive at most {CONSUMER_RECEIVE_MAX_BYTES}"
            )
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # External services; when unset, `worktool up` starts the embedded part.
    kafka_bootstrap_servers: str | None = Field(default=None, alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    # Least privilege (migration 0006): with an external DATABASE_URL (the owner's, for migrations),
    # `worktool up` gives each part its own login from these; without them it falls back to the owner's
    # URL with a warning. `worktool migrate logins` creates the users these URLs name.
    database_url_gateway: str | None = Field(default=None, alias="WORKTOOL_DATABASE_URL_GATEWAY", repr=False)
    database_url_dataflow: str | None = Field(
        default=None, alias="WORKTOOL_DATABASE_URL_DATAFLOW", repr=False
    )
    database_url_console: str | None = Field(default=None, alias="WORKTOOL_DATABASE_URL_CONSOLE", repr=False)

    http_host: str = Field(default="127.0.0.1", alias="WORKTOOL_HTTP_HOST")
    http_port: int = Field(default=8080, alias="WORKTOOL_HTTP_PORT")
    data_dir: Path = Field(default=Path(".worktool-data"), alias="WORKTOOL_DATA_DIR")
    config_path: Path | None = Field(default=None, alias="WORKTOOL_CONFIG")
    api_base_url: str = Field(default="https://api.worktool.ymdyes.cn", alias="WORKTOOL_API_BASE_URL")

    # Console API (console/): our own HTTP API for operators; not WorkTool's API above. Every /api call
    # carries a bearer token: an access token from POST /api/auth/login, or WORKTOOL_API_TOKEN (a
    # service account with the role WORKTOOL_API_TOKEN_ROLE, for scripts).
    api_host: str = Field(default="127.0.0.1", alias="WORKTOOL_API_HOST")
    api_port: int = Field(default=8081, alias="WORKTOOL_API_PORT")
    api_token: str | None = Field(default=None, alias="WORKTOOL_API_TOKEN", repr=False)
    api_token_role: ConsoleRole = Field(default="supervisor", alias="WORKTOOL_API_TOKEN_ROLE")
    # HS256 secret of the access tokens. Required to listen beyond loopback (every instance must share
    # it); on loopback without it one is generated into <data dir>/console/jwt_secret (mode 0600).
    jwt_secret: str | None = Field(default=None, alias="WORKTOOL_JWT_SECRET", repr=False)
    jwt_ttl_s: int = Field(default=1800, gt=0, le=86400, alias="WORKTOOL_JWT_TTL_S")
    # Accounts kept in configuration (YAML: users: [{username, role, password_hash}], argon2 hashes from
    # `worktool users hash`), beside those `worktool users add` stores in the database.
    users_file: Path | None = Field(default=None, alias="WORKTOOL_USERS_FILE")
    # 32 random bytes, urlsafe base64 (`worktool secrets-key` prints one): encrypts the LLM
    # provider keys set through the console. Without it the console refuses to store any.
    secrets_key: str | None = Field(default=None, alias="WORKTOOL_SECRETS_KEY", repr=False)
    # How long the API and `worktool alerts` wait for the broker to acknowledge a control record.
    api_produce_timeout_s: float = Field(default=5.0, gt=0, alias="WORKTOOL_API_PRODUCE_TIMEOUT_S")

    topic_raw: str = Field(default="worktool.raw", alias="WORKTOOL_TOPIC_RAW")
    topic_control: str = Field(default="worktool.control", alias="WORKTOOL_TOPIC_CONTROL")
    topic_commands: str = Field(default="worktool.commands", alias="WORKTOOL_TOPIC_COMMANDS")
    topic_monitor: str = Field(default="worktool.monitor", alias="WORKTOOL_TOPIC_MONITOR")
    topic_dlq: str = Field(default="worktool.dlq", alias="WORKTOOL_TOPIC_DLQ")
    # The live dataflow's LLM decisions (worktool.models.LlmRecord), archived with raw and control so a
    # replay makes the same ones without a provider.
    topic_llm: str = Field(default="worktool.llm", alias="WORKTOOL_TOPIC_LLM")
    # Fixed at topic creation: Tansu cannot add partitions later.
    raw_partitions: int = Field(default=6, alias="WORKTOOL_RAW_PARTITIONS")

    # Gateway
    max_body_bytes: int = Field(default=2 * 1024 * 1024, alias="WORKTOOL_MAX_BODY_BYTES")
    # robotId (WorkTool ids are short ASCII; it is part of session keys and Kafka keys).
    max_id_chars: int = Field(default=128, alias="WORKTOOL_MAX_ID_CHARS")
    # receivedName, groupName, groupRemark: part of session ids and of indexed columns.
    max_name_chars: int = Field(default=256, alias="WORKTOOL_MAX_NAME_CHARS")
    # WorkTool bodies are flat; far below what the serialiser writes (see RecordLimits).
    max_json_depth: int = Field(default=32, alias="WORKTOOL_MAX_JSON_DEPTH")
    # Under WorkTool's 3-s budget, but not under 1 s: the spool drainer's fresh producer needs about
    # half a second for its first delivery (measured on the embedded broker), and with less it never drains.
    produce_timeout_s: float = Field(default=1.5, ge=1.0, le=2.5, alias="WORKTOOL_PRODUCE_TIMEOUT_S")
    gateway_workers: int = Field(default=1, alias="WORKTOOL_GATEWAY_WORKERS")
    # Secrets (never logged, never in the business YAML): per-robot webhook tokens as a JSON object
    # {"robot_id": "token"}, and/or a file holding that object (refused when group/world readable).
    webhook_tokens: str | None = Field(default=None, alias="WORKTOOL_WEBHOOK_TOKENS", repr=False)
    webhook_tokens_file: Path | None = Field(default=None, alias="WORKTOOL_WEBHOOK_TOKENS_FILE")
    # When set, GET /metrics needs `Authorization: Bearer <token>`.
    metrics_token: str | None = Field(default=None, alias="WORKTOOL_METRICS_TOKEN", repr=False)
    # Set by `worktool up` for the gateway: the supervisor's stack.json, whose process states /healthz shows.
    stack_info_path: Path | None = Field(default=None, alias="WORKTOOL_STACK_INFO")

    # Dataflow
    shards: int = Field(default=16, alias="WORKTOOL_SHARDS")
    dedup_window_s: float = Field(default=10.0, alias="WORKTOOL_DEDUP_WINDOW_S")
    # The event-time clock (operators/timers.py). Live, the watermark is wall time minus the allowed
    # lateness, sent every tick interval: a due timer fires within lateness + interval of its due time.
    # A record later than the allowed lateness is still processed, but is counted as late and may see a
    # timer fire before it that a replay would fire after it.
    tick_interval_s: float = Field(default=0.25, gt=0, alias="WORKTOOL_TICK_INTERVAL_S")
    # ...while records arrive; once none was delivered for a second, every idle tick interval (the idle
    # flow's CPU; a due timer then fires within lateness + this interval). Never below tick_interval_s.
    idle_tick_interval_s: float = Field(default=1.0, gt=0, alias="WORKTOOL_IDLE_TICK_INTERVAL_S")
    allowed_lateness_s: float = Field(default=1.0, ge=0, alias="WORKTOOL_ALLOWED_LATENESS_S")
    # Replay: the watermark is the latest record time read minus the same lateness, sent at most once
    # per interval; decisions do not depend on the spacing (docs/architecture.md), so it can be sparse.
    replay_tick_interval_s: float = Field(default=60.0, gt=0, alias="WORKTOOL_REPLAY_TICK_INTERVAL_S")
    # Loss detection (operators/gaps.py): a gateway's sequence number still missing this long (event
    # time) after a later one arrived raises a pipeline_gap alert; the spool may deliver late.
    gap_grace_s: float = Field(default=60.0, gt=0, alias="WORKTOOL_GAP_GRACE_S")
    snapshot_interval_s: int = Field(default=2, alias="WORKTOOL_SNAPSHOT_INTERVAL_S")
    # The young generation's collection threshold in a dataflow process (dataflows/collector.py);
    # 0 keeps Python's default (700).
    gc_threshold: int = Field(default=50_000, ge=0, alias="WORKTOOL_GC_THRESHOLD")
    # No input can stall a step (dataflows/watchdog.py): a record a step has not finished within the
    # budget is interrupted and dead-lettered; one that cannot be interrupted is written to the poison
    # list and the process exits (the supervisor restarts it; the record is then skipped).
    step_budget_s: float = Field(default=10.0, gt=0, alias="WORKTOOL_STEP_BUDGET_S")
    # `worktool up` restarts a dataflow whose heartbeat is older than this (stalled, not idle: ticks
    # refresh the heartbeat every second while idle); 0 switches the check off.
    dataflow_stall_s: float = Field(default=30.0, ge=0, alias="WORKTOOL_DATAFLOW_STALL_S")
    pg_batch_size: int = Field(default=500, alias="WORKTOOL_PG_BATCH_SIZE")
    # Prometheus metrics of the dataflow process (its counters, bytewax's Kafka consumer lag); off when
    # no port is set. `worktool up` picks a free loopback port.
    dataflow_metrics_port: int | None = Field(default=None, alias="WORKTOOL_DATAFLOW_METRICS_PORT")
    dataflow_metrics_host: str = Field(default="127.0.0.1", alias="WORKTOOL_DATAFLOW_METRICS_HOST")
    # A cluster of dataflow processes (dataflows/cluster.py, docs/operations.md "A dataflow cluster"):
    # worker threads per process, processes, this process's id and every process's host:port (";"-separated,
    # the same list everywhere). bytewax's BYTEWAX_WORKERS_PER_PROCESS, BYTEWAX_PROCESS_ID and
    # BYTEWAX_ADDRESSES are read when these are not set.
    dataflow_workers: int | None = Field(default=None, ge=1, alias="WORKTOOL_DATAFLOW_WORKERS")
    dataflow_processes: int | None = Field(default=None, ge=1, alias="WORKTOOL_DATAFLOW_PROCESSES")
    dataflow_process_id: int | None = Field(default=None, ge=0, alias="WORKTOOL_DATAFLOW_PROCESS_ID")
    dataflow_addresses: str | None = Field(default=None, alias="WORKTOOL_DATAFLOW_ADDRESSES")
    # Partitions of a new recovery directory: fixed forever for that directory; an existing directory keeps
    # its count. Unset: the workers of the dataflow that creates it (processes x workers; 1 by default).
    # bytewax commits every partition at every epoch, busy or idle (three fsyncs each): 16 partitions cost
    # a one-worker dataflow ~0.45 % of a core while idle (benchmarks/README.md, "Issue 14: idle, again").
    # Set it for a directory meant to take a larger cluster later (fewer partitions than workers works too).
    recovery_partitions: int | None = Field(default=None, ge=1, alias="WORKTOOL_RECOVERY_PARTITIONS")

    # The trained message-type model on top of the rules (docs/rules.md §2): "builtin" (shipped with the
    # package), "off" (rules only), or the path of a model file written by `worktool train --out`.
    classifier_model: str = Field(default="builtin", alias="WORKTOOL_CLASSIFIER_MODEL")

    # LLM (classification issue); secrets are never logged.
    llm_provider: str | None = Field(default=None, alias="WORKTOOL_LLM_PROVIDER")  # openai | dashscope
    llm_base_url: str | None = Field(default=None, alias="WORKTOOL_LLM_BASE_URL")
    llm_model: str | None = Field(default=None, alias="WORKTOOL_LLM_MODEL")
    # Without WORKTOOL_LLM_API_KEY the dataflow uses the provider's key stored through the console
    # (decrypted with WORKTOOL_SECRETS_KEY), re-read at most every WORKTOOL_LLM_KEY_REFRESH_S seconds and
    # at once after a 401/403 (classifiers/llm/keys.py).
    llm_api_key: str | None = Field(default=None, alias="WORKTOOL_LLM_API_KEY", repr=False)
    llm_key_refresh_s: float = Field(default=30.0, gt=0, alias="WORKTOOL_LLM_KEY_REFRESH_S")
    llm_timeout_s: float = Field(default=8.0, alias="WORKTOOL_LLM_TIMEOUT_S")
    llm_max_in_flight: int = Field(default=8, alias="WORKTOOL_LLM_MAX_IN_FLIGHT")

    # Knowledge base (operators/knowledge.py, infra/knowledge.py): the reply path asks the remote TaxKB
    # when its base URL is set, else the passages `worktool kb import` put into PostgreSQL; WORKTOOL_KB
    # names one explicitly (taxkb, postgres) or switches it off. The API key is a secret: never logged.
    kb_backend: Literal["auto", "taxkb", "postgres", "off"] = Field(default="auto", alias="WORKTOOL_KB")
    taxkb_base_url: str | None = Field(default=None, alias="WORKTOOL_TAXKB_BASE_URL")
    taxkb_api_key: str | None = Field(default=None, alias="WORKTOOL_TAXKB_API_KEY", repr=False)
    taxkb_search_path: str = Field(default="/search", alias="WORKTOOL_TAXKB_SEARCH_PATH")
    # A reply waits for the knowledge base: far below the seeds' 30 s.
    taxkb_timeout_s: float = Field(default=5.0, gt=0, le=60, alias="WORKTOOL_TAXKB_TIMEOUT_S")
    # Answers are cached per (query, limit) this long; 0: no cache. Failures are never cached.
    taxkb_cache_ttl_s: float = Field(default=300.0, ge=0, alias="WORKTOOL_TAXKB_CACHE_TTL_S")

    # Dispatcher (dispatcher/): sends worktool.commands to WorkTool's sendRawMessage and to the phone/SMS
    # webhooks, and writes each answer to worktool.raw as an `accepted` record.
    dispatcher_group: str = Field(default="worktool-dispatcher", alias="WORKTOOL_DISPATCHER_GROUP")
    phone_webhook_url: str | None = Field(default=None, alias="WORKTOOL_PHONE_WEBHOOK_URL", repr=False)
    sms_webhook_url: str | None = Field(default=None, alias="WORKTOOL_SMS_WEBHOOK_URL", repr=False)
    # A Feishu custom bot (飞书自定义机器人): its webhook URL (the token is in the path) and, when the bot has
    # signature verification on, its signing secret. Both secrets: never logged. The desk sends the daily
    # report there too when the URL is set (`feishu_configured`).
    feishu_webhook_url: str | None = Field(default=None, alias="WORKTOOL_FEISHU_WEBHOOK_URL", repr=False)
    feishu_secret: str | None = Field(default=None, alias="WORKTOOL_FEISHU_SECRET", repr=False)
    # WorkTool allows 60 requests per minute per source IP: every dispatcher process shares one Redis
    # limiter (the key), and each request (retries included) spends one of the requests per window.
    # The margin widens the window so that network jitter cannot squeeze N+1 requests into one window
    # as WorkTool sees them.
    dispatch_rate_requests: int = Field(default=60, gt=0, alias="WORKTOOL_DISPATCH_RATE_REQUESTS")
    dispatch_rate_window_s: float = Field(default=60.0, gt=0, alias="WORKTOOL_DISPATCH_RATE_WINDOW_S")
    dispatch_rate_margin_s: float = Field(default=1.0, ge=0, alias="WORKTOOL_DISPATCH_RATE_MARGIN_S")
    dispatch_rate_key: str = Field(default="worktool:dispatcher:rate", alias="WORKTOOL_DISPATCH_RATE_KEY")
    dispatch_batch_size: int = Field(default=100, ge=1, le=100, alias="WORKTOOL_DISPATCH_BATCH_SIZE")
    # Tries per request on HTTP 429 and network errors (exponential backoff from dispatch_backoff_s,
    # or Retry-After, capped at dispatch_max_backoff_s).
    dispatch_max_tries: int = Field(default=3, ge=1, alias="WORKTOOL_DISPATCH_MAX_TRIES")
    dispatch_backoff_s: float = Field(default=1.0, ge=0, alias="WORKTOOL_DISPATCH_BACKOFF_S")
    dispatch_max_backoff_s: float = Field(default=60.0, ge=0, alias="WORKTOOL_DISPATCH_MAX_BACKOFF_S")
    dispatch_timeout_s: float = Field(default=10.0, gt=0, alias="WORKTOOL_DISPATCH_TIMEOUT_S")
    # How long a command id stays claimed in Redis (the idempotency key checked before every send).
    dispatch_claim_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, alias="WORKTOOL_DISPATCH_CLAIM_TTL_S")
    # Prometheus metrics (loopback unless set otherwise, e.g. in a container); port 0 turns them off.
    dispatcher_metrics_host: str = Field(default="127.0.0.1", alias="WORKTOOL_DISPATCHER_METRICS_HOST")
    dispatcher_metrics_port: int = Field(default=9108, ge=0, alias="WORKTOOL_DISPATCHER_METRICS_PORT")

    @model_validator(mode="after")
    def _limits_fit_together(self) -> Settings:
        if problems := self.limits.problems():
            raise ValueError("inconsistent record limits: " + "; ".join(problems))
        return self

    @property
    def limits(self) -> RecordLimits:
        return RecordLimits(
            max_body_bytes=self.max_body_bytes,
            max_id_chars=self.max_id_chars,
            max_name_chars=self.max_name_chars,
            max_json_depth=self.max_json_depth,
        )

    def missing(self, *fields: str) -> list[str]:
        """The environment names of those `fields` that are not set (for a "needs X and Y" message)."""
        model = type(self).model_fields
        return [model[f].alias or f.upper() for f in fields if not getattr(self, f)]

    def weak_secrets(self) -> list[str]:
        """Why a configured secret cannot be trusted (a template placeholder such as "change-me", or
        too short), one line per variable, naming it; [] when all are fine. Services refuse to start
        on any (commands/cli.py). Unset secrets are not this check's business."""
        problems = []

        def check(name: str, value: str | None, *, min_chars: int = MIN_SECRET_CHARS) -> None:
            if value is None or not value.strip():
                return
            if is_placeholder(value):
                problems.append(f"{name} holds a placeholder value: replace it with a random one")
            elif len(value.strip()) < min_chars:
                problems.append(f"{name} is shorter than {min_chars} characters: use a long random value")

        check("WORKTOOL_METRICS_TOKEN", self.metrics_token)
        check("WORKTOOL_API_TOKEN", self.api_token)
        check("WORKTOOL_JWT_SECRET", self.jwt_secret, min_chars=32)
        check("WORKTOOL_SECRETS_KEY", self.secrets_key, min_chars=32)
        check("WORKTOOL_LLM_API_KEY", self.llm_api_key, min_chars=1)
        check("WORKTOOL_FEISHU_SECRET", self.feishu_secret, min_chars=1)
        check("WORKTOOL_TAXKB_API_KEY", self.taxkb_api_key, min_chars=1)
        if self.webhook_tokens:
            try:
                tokens = json.loads(self.webhook_tokens)
            except ValueError:
                tokens = None  # the gateway reports a malformed value with its own message
            if isinstance(tokens, dict):
                for robot, token in tokens.items():
                    value = token if isinstance(token, str) else None
                    check(
                        f"WORKTOOL_WEBHOOK_TOKENS (robot {robot})", value, min_chars=MIN_WEBHOOK_TOKEN_CHARS
                    )
        for name, url in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url),
                          ("WORKTOOL_DATABASE_URL_GATEWAY", self.database_url_gateway),
                          ("WORKTOOL_DATABASE_URL_DATAFLOW", self.database_url_dataflow),
                          ("WORKTOOL_DATABASE_URL_CONSOLE", self.database_url_console)):  # fmt: skip
            password = urlsplit(url).password if url else None
            check(f"the password in {name}", unquote(password) if password else None, min_chars=1)
        return problems

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables (for a child process that reads its settings from the
        environment); unset ones are left out."""
        return {
            field.alias or name.upper(): str(value)
            for name, field in type(self).model_fields.items()
            if (value := getattr(self, name)) is not None
        }

    @property
    def feishu_configured(self) -> bool:
        """Whether commands of channel `feishu` can be sent (WORKTOOL_FEISHU_WEBHOOK_URL is set): the
        dataflow emits them only then (the desk's daily report)."""
        return bool((self.feishu_webhook_url or "").strip())

    @property
    def recovery_dir(self) -> Path:
        return self.data_dir / "recovery"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def all_topics(self) -> list[str]:
        return [
            self.topic_raw, self.topic_control, self.topic_commands, self.topic_monitor, self.topic_dlq,
            self.topic_llm,
        ]  # fmt: skip


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def default_limits() -> RecordLimits:
    """The limits of a default configuration (for code that runs without Settings, e.g. benchmarks)."""
    fields = Settings.model_fields
    return RecordLimits(
        max_body_bytes=fields["max_body_bytes"].default,
        max_id_chars=fields["max_id_chars"].default,
        max_name_chars=fields["max_name_chars"].default,
        max_json_depth=fields["max_json_depth"].default,
    )
