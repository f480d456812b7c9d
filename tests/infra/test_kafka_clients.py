"""One Kafka client factory (infra/kafka_clients.py): nothing else constructs a confluent_kafka client,
and each role's configuration carries its deliberate options."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra import kafka_clients
from infra.kafka_clients import ROLES, KafkaClients
from worktool.settings import Settings

REPO = Path(__file__).resolve().parents[2]
FACTORY = REPO / "infra" / "kafka_clients.py"
CLIENTS = {"Producer", "Consumer", "AdminClient"}
SKIP = {"tests", "benchmarks", ".venv", "build", "node_modules", ".git"}


def _sources() -> list[Path]:
    return [
        p
        for p in REPO.rglob("*.py")
        if not (set(p.relative_to(REPO).parts[:-1]) & SKIP) and not p.name.startswith(".")
    ]


def _client_constructions(path: Path) -> list[str]:
    return [f"{path.relative_to(REPO)}:{hit}" for hit in _constructions(path.read_text(encoding="utf-8"))]


def _imports(tree: ast.AST) -> tuple[dict[str, str], set[str]]:
    """Local names of the client classes (name -> class) and of the confluent_kafka modules."""
    names: dict[str, str] = {}
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {
                (a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("confluent_kafka")
            }
            continue
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        wanted = CLIENTS if node.module.startswith("confluent_kafka") else set()
        if node.module == "bytewax.connectors.kafka":
            wanted = {"KafkaSource"}
        for alias in node.names:
            if alias.name in wanted:
                names[alias.asname or alias.name] = alias.name
            elif alias.name == "admin" and node.module == "confluent_kafka":
                modules.add(alias.asname or alias.name)
    return names, modules


def _constructions(source: str) -> list[str]:
    """Calls in `source` that construct a confluent_kafka client, under any alias, or bytewax's
    KafkaSource."""
    tree = ast.parse(source)
    names, modules = _imports(tree)
    found = []
    for node in ast.walk(tree):
        f = node.func if isinstance(node, ast.Call) else None
        if isinstance(f, ast.Name) and f.id in names:
            found.append(f"{node.lineno}: {names[f.id]}(...)")
        elif isinstance(f, ast.Attribute) and f.attr in CLIENTS:
            root = f.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                found.append(f"{node.lineno}: {f.attr}(...)")
    return found


def test_no_module_but_the_factory_constructs_a_kafka_client() -> None:
    sources = _sources()
    assert FACTORY in sources and len(sources) > 50
    offenders = [hit for p in sources if p != FACTORY for hit in _client_constructions(p)]
    # bytewax's KafkaSource creates its consumer itself: built in one place, with the factory's config.
    allowed = [h for h in offenders if h.startswith("dataflows/main.py") and h.endswith("KafkaSource(...)")]
    assert len(allowed) == 1, offenders
    assert [h for h in offenders if h not in allowed] == []
    assert _client_constructions(FACTORY)  # the scan does see constructions


def test_the_scan_sees_aliases_and_module_paths() -> None:
    source = (
        "import confluent_kafka as ck\nfrom confluent_kafka import Producer as P\n"
        "from confluent_kafka.admin import AdminClient\n"
        "P({})\nck.Consumer({})\nAdminClient({})\nck.admin.AdminClient({})\nck.TopicPartition('t', 0)\n"
    )
    assert len(_constructions(source)) == 4


SETTINGS = Settings(
    KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
    WORKTOOL_PRODUCE_TIMEOUT_S=1.5,
    WORKTOOL_API_PRODUCE_TIMEOUT_S=4.0,
    WORKTOOL_DISPATCHER_GROUP="disp-x",
)


def test_every_client_shares_the_common_settings() -> None:
    clients = KafkaClients(SETTINGS)
    for name, role in ROLES.items():
        if role.kind == "producer":
            config = clients.producer_config(name)
            assert config["acks"] == "all", name
            assert config["message.max.bytes"] == SETTINGS.limits.message_max_bytes, name
        elif role.kind == "consumer":
            config = clients.consumer_config(name)
            assert config["enable.auto.commit"] is False, name
            assert config["group.id"], name
        else:
            config = kafka_clients.admin_config(clients.bootstrap)
        assert config["bootstrap.servers"] == "127.0.0.1:1", name
        assert config["client.id"] == f"worktool-{name}", name
        assert config["reconnect.backoff.max.ms"] == 1000 and config["log.connection.close"] is False, name


def test_each_role_keeps_its_deliberate_options() -> None:
    c = KafkaClients(SETTINGS)
    gateway = c.producer_config("gateway")
    assert gateway["enable.idempotence"] is True and gateway["linger.ms"] == 2
    assert gateway["message.timeout.ms"] == 1500 and gateway["allow.auto.create.topics"] is False
    sink = c.producer_config("sink")
    assert sink["enable.idempotence"] is True and sink["compression.type"] == "lz4"
    assert sink["message.timeout.ms"] == 10_000 and sink["allow.auto.create.topics"] is False
    recorder = c.producer_config("recorder")
    assert recorder["enable.idempotence"] is True and recorder["linger.ms"] == 0
    assert recorder["message.timeout.ms"] == 5000
    control = c.producer_config("control")
    assert control["enable.idempotence"] is False and control["max.in.flight.requests.per.connection"] == 1
    assert control["message.timeout.ms"] == 4000 and control["allow.auto.create.topics"] is False

    dispatcher = c.consumer_config("dispatcher")
    assert dispatcher["group.id"] == "disp-x" and dispatcher["auto.offset.reset"] == "earliest"
    assert dispatcher["session.timeout.ms"] == 6000
    stream = c.consumer_config("monitor_stream")
    assert stream["group.id"].startswith("worktool-console-") and stream["enable.auto.offset.store"] is False
    assert stream["group.id"] != c.consumer_config("monitor_stream")["group.id"]  # never shared
    assert c.consumer_config("archive")["enable.partition.eof"] is True
    assert kafka_clients.admin_config("x")["allow.auto.create.topics"] is False

    source = kafka_clients.source_config()
    assert source["auto.offset.reset"] == "error" and source["session.timeout.ms"] == "6000"
    assert all(isinstance(v, str) for v in source.values())  # bytewax passes them on as they are
    assert not {"bootstrap.servers", "group.id"} & set(source)  # bytewax sets those itself


def test_the_call_sites_use_their_role() -> None:
    from dispatcher.service import consumer_config
    from gateway.producer import producer_config as gateway_config
    from sinks.kafka import producer_config as sink_config

    c = KafkaClients(SETTINGS)
    assert gateway_config(SETTINGS) == c.producer_config("gateway")
    assert sink_config("127.0.0.1:1", SETTINGS.limits) == c.producer_config("sink")
    assert consumer_config(SETTINGS) == c.consumer_config("dispatcher")


@pytest.mark.parametrize("name", sorted(ROLES))
def test_librdkafka_accepts_every_role(name: str) -> None:
    """librdkafka refuses an unknown or misspelt property when the client is created."""
    role, c = ROLES[name], KafkaClients(SETTINGS)
    if role.kind == "producer":
        client = c.producer(name)
        client.flush(0)
    elif role.kind == "consumer":
        client = c.consumer(name)
        client.close()
    else:
        c.admin()
    if name == "dataflow":
        from confluent_kafka import Consumer

        Consumer(
            {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", **kafka_clients.source_config()}
        ).close()


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="no producer role"):
        kafka_clients.producer_config("dataflow", "x")
    with pytest.raises(ValueError, match="no consumer role"):
        kafka_clients.consumer_config("gatway", "x")
