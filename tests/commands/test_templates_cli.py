"""`worktool templates list|test` (issue 16 part 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from commands.cli import app
from worktool.catalogue import shipped_catalogue

RUNNER = CliRunner()


@pytest.fixture(autouse=True)
def _no_business_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKTOOL_CONFIG", raising=False)


def test_list_filters_by_category_and_persona() -> None:
    everything = RUNNER.invoke(app, ["templates", "list", "--json"])
    assert everything.exit_code == 0
    assert len(everything.stdout.splitlines()) == len(shipped_catalogue().templates)
    by_name = RUNNER.invoke(app, ["templates", "list", "--category", "投诉处理", "--json"])
    by_code = RUNNER.invoke(app, ["templates", "list", "-c", "complaint", "--persona", "service", "--json"])
    complaint = [json.loads(line) for line in by_name.stdout.splitlines()]
    assert len(complaint) == 6 and all(t["category_name"] == "投诉处理" for t in complaint)
    service = [json.loads(line) for line in by_code.stdout.splitlines()]
    assert service == complaint  # the generic three and service's three
    community = RUNNER.invoke(app, ["templates", "list", "-c", "complaint", "-p", "community", "--json"])
    assert len(community.stdout.splitlines()) == 3
    table = RUNNER.invoke(app, ["templates", "list", "-c", "welcome"])
    assert table.exit_code == 0 and "tpl_welcome_01" in table.stdout
    assert RUNNER.invoke(app, ["templates", "list", "-c", "nope"]).exit_code == 2
    assert RUNNER.invoke(app, ["templates", "list", "-p", "nobody"]).exit_code == 2


def test_test_renders_with_samples_and_given_values() -> None:
    sample = RUNNER.invoke(app, ["templates", "test", "tpl_welcome_01"])
    assert sample.exit_code == 0
    assert (
        sample.stdout.strip()
        == "欢迎 张三 加入抖音号主3群！🎉 我是运营助理小A，有问题随时@我，售后同事也在群里哦～"
    )
    given = RUNNER.invoke(app, ["templates", "test", "tpl_welcome_01", "--var", "user=李四", "-v", "group=新号群",
                                "--persona", "tech_support"])  # fmt: skip
    assert given.exit_code == 0
    assert (
        given.stdout.strip() == "欢迎 李四 加入新号群！我是运营助理小A，有问题随时@我，售后同事也在群里哦～"
    )
    assert RUNNER.invoke(app, ["templates", "test", "tpl_nothing"]).exit_code == 1
    assert RUNNER.invoke(app, ["templates", "test", "tpl_welcome_01", "--var", "product=x"]).exit_code == 2
    assert RUNNER.invoke(app, ["templates", "test", "tpl_welcome_01", "--var", "user"]).exit_code == 2
