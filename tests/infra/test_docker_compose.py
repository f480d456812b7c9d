"""docker-compose.yml, read as data (no Docker engine here): only the gateway is published, on loopback
by default; every secret comes from the env file and the required ones have no default; each process
gets only its own secrets; every long-running service restarts by itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
LONG_RUNNING = {
    "kafka",
    "postgres",
    "redis",
    "gateway",
    "dataflow",
    "dataflow-1",  # the second process of the dataflow cluster
    "console",
    "dispatcher",
    "prometheus",
    "grafana",
}
PARTS_WITH_DATABASE = {"gateway": "worktool_gateway_login", "dataflow": "worktool_dataflow_login",
                       "console": "worktool_console_login"}  # fmt: skip
DATAFLOW_PROCESSES = ["dataflow", "dataflow-1"]  # the services of the dataflow cluster, by process id


class MissingVariable(LookupError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation, enough for this file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        unset_or_empty = not current if op and op.startswith(":") else current is None
        if op and op.endswith("?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        if op and op.endswith("-") and unset_or_empty:
            return arg
        return current or ""

    return VARIABLE.sub(substitute, value)


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return env_file(REPO / ".env.example")


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_only_the_gateway_is_published_on_loopback_by_default(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}
    (mapping,) = interpolate(services["gateway"]["ports"], {})
    assert mapping == "127.0.0.1:8080:8080"
    (mapping,) = interpolate(services["gateway"]["ports"], {"WORKTOOL_PUBLISH_ADDRESS": "10.0.0.5"})
    assert mapping.startswith("10.0.0.5:")


def test_required_secrets_have_no_default(compose: dict[str, Any], example_env: dict[str, str]) -> None:
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(compose, {})
    required = set()
    for match in VARIABLE.finditer((REPO / "docker-compose.yml").read_text()):
        if match["op"] in (":?", "?"):
            required.add(match["name"])
    assert {
        "POSTGRES_PASSWORD", "POSTGRES_GATEWAY_PASSWORD", "POSTGRES_DATAFLOW_PASSWORD", "POSTGRES_CONSOLE_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD", "WORKTOOL_METRICS_TOKEN", "WORKTOOL_JWT_SECRET",
    } <= required  # fmt: skip
    # The template names every required variable, so copying it gives a file compose accepts.
    assert required <= set(example_env)
    resolved = interpolate(compose, example_env)
    services = resolved["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == example_env["POSTGRES_PASSWORD"]
    assert (
        services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        == example_env["GRAFANA_ADMIN_PASSWORD"]
    )
    assert (
        f"worktool:{example_env['POSTGRES_PASSWORD']}@postgres:"
        in services["migrate"]["environment"]["DATABASE_URL"]
    )
    gateway_url = services["gateway"]["environment"]["DATABASE_URL"]
    assert f"worktool_gateway_login:{example_env['POSTGRES_GATEWAY_PASSWORD']}@postgres:" in gateway_url


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert "worktool:worktool@" not in text
    assert "admin}" not in text.replace("GRAFANA_ADMIN_USER:-admin}", "")
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|TOKEN|API_KEY|SECRET", key):
                assert isinstance(value, str) and value.startswith("${"), f"{name}: {key} is hard-coded"


def test_each_process_gets_only_its_own_secrets(compose: dict[str, Any]) -> None:
    services = compose["services"]
    owners = {
        "WORKTOOL_LLM_API_KEY": set(DATAFLOW_PROCESSES),
        "WORKTOOL_WEBHOOK_TOKENS": {"gateway"},
        "WORKTOOL_METRICS_TOKEN": {"gateway", *DATAFLOW_PROCESSES, "console", "dispatcher"},
        "WORKTOOL_JWT_SECRET": {"console"},
        "WORKTOOL_SECRETS_KEY": {"console", *DATAFLOW_PROCESSES},  # the dataflow opens the stored LLM keys
        "WORKTOOL_API_TOKEN": {"console"},
        "WORKTOOL_PHONE_WEBHOOK_URL": {"dispatcher"},
    }
    for secret, allowed in owners.items():
        having = {name for name, service in services.items() if secret in environment(service)}
        assert having == allowed, secret
    assert "metrics_token" in services["prometheus"]["secrets"]
    assert compose["secrets"]["metrics_token"] == {"environment": "WORKTOOL_METRICS_TOKEN"}


def test_prometheus_scrapes_every_part_with_the_token(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    environments = {name: environment(service) for name, service in compose["services"].items()}
    for part in ("gateway", "dataflow", "console", "dispatcher"):
        job = jobs[f"worktool-{part}"]
        assert job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
        targets = job["static_configs"][0]["targets"]
        hosts = DATAFLOW_PROCESSES if part == "dataflow" else [part]  # every process of the cluster
        assert [target.split(":")[0] for target in targets] == hosts
        for target in targets:
            host, port = target.split(":")
            ports = {str(v) for k, v in environments[host].items() if k.endswith("_PORT")}
            assert port in ports, host  # the port the part really serves /metrics on
    assert "BYTEWAX_DATAFLOW_API_ENABLED" not in environments["dataflow"]  # bytewax's API has no token


def test_each_part_logs_in_to_the_database_as_its_own_user(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    services = interpolate(compose, example_env)["services"]
    for part, user in PARTS_WITH_DATABASE.items():
        url = services[part]["environment"]["DATABASE_URL"]
        assert url.startswith(f"postgresql://{user}:"), part
    # Only the migrate job has the owner's URL; the dispatcher has none at all.
    having_owner = {
        name for name, service in services.items()
        if "worktool:" in str(environment(service).get("DATABASE_URL", ""))
    }  # fmt: skip
    assert having_owner == {"migrate"}
    assert "DATABASE_URL" not in environment(services["dispatcher"])
    migrate = environment(services["migrate"])
    for part in PARTS_WITH_DATABASE:
        assert (
            migrate[f"WORKTOOL_DATABASE_URL_{part.upper()}"] == services[part]["environment"]["DATABASE_URL"]
        )
    assert "worktool migrate logins" in " ".join(services["migrate"]["command"])


def test_the_console_is_a_service_that_is_not_published(compose: dict[str, Any]) -> None:
    console = compose["services"]["console"]
    assert console["command"] == ["worktool", "console"]
    assert "ports" not in console
    assert environment(console)["WORKTOOL_API_HOST"] == "0.0.0.0"  # in the compose network, with a JWT secret


def test_the_example_env_file_is_refused_until_its_placeholders_are_replaced(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    from worktool.settings import Settings

    services = interpolate(compose, example_env)["services"]
    for name in ("gateway", "dataflow", "console", "dispatcher", "migrate"):
        env = {k: str(v) for k, v in environment(services[name]).items()}
        problems = Settings(**env).weak_secrets()
        assert problems, f"{name} would start with the template's placeholders"
        assert all("placeholder" in p for p in problems)
    filled = {k: ("Zq8" + "x" * 29 if v.startswith("change-me") else v) for k, v in example_env.items()}
    filled["WORKTOOL_WEBHOOK_TOKENS"] = '{"wt_day_01": "Zq8rT0pLw2Ks9v"}'
    for name, service in interpolate(compose, filled)["services"].items():
        if name in ("gateway", "dataflow", "console", "dispatcher", "migrate"):
            env = {k: str(v) for k, v in environment(service).items()}
            assert Settings(**env).weak_secrets() == [], name


def test_long_running_services_restart_and_intake_waits_for_nothing(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] in ("unless-stopped", "always"), name
    assert "depends_on" not in services["gateway"]


def test_the_env_file_stays_out_of_git_and_images() -> None:
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in (REPO / ".dockerignore").read_text().splitlines()
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert "." not in copied and not any(".env" in source for source in copied)


def test_the_dataflow_runs_as_one_cluster_of_replicas(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    from dataflows.cluster import resolve_shape
    from worktool.settings import Settings

    services = interpolate(compose, example_env)["services"]
    shapes = []
    for name in DATAFLOW_PROCESSES:
        service = services[name]
        env = {k: str(v) for k, v in environment(service).items()}
        shapes.append(resolve_shape(Settings(**env), environ={}))
        assert service["command"] == ["worktool", "dataflow"]
        assert service["volumes"] == ["dataflow-data:/data"]  # one recovery directory for the cluster
        assert service["restart"] == "unless-stopped" and service["stop_signal"] == "SIGINT"
        assert env["DATABASE_URL"].startswith("postgresql://worktool_dataflow_login:")
    assert [s.process_id for s in shapes] == list(range(len(DATAFLOW_PROCESSES)))
    assert {s.addresses for s in shapes} == {tuple(f"{name}:2101" for name in DATAFLOW_PROCESSES)}
    raw_partitions = int(environment(services["migrate"])["WORKTOOL_RAW_PARTITIONS"])
    assert raw_partitions >= sum(s.workers for s in shapes)  # a partition for every worker at least
