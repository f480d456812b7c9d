"""`worktool kb import` and `worktool kb search` against a fresh migrated PostgreSQL: each format, the
shipped set, a re-import that changes nothing, --replace, a bad file named with its line (exit 2), no
database (exit 2), and a search as the reply path would see it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from commands.cli import app
from fakes.taxkb_server import FakeTaxKB

pytestmark = pytest.mark.integration

CSV = "question,answer,tags\n怎么绑定手机号？,在账号与安全里绑定手机号。,手机号\n扫码提示二维码过期？,刷新页面重新生成二维码。,扫码\n"
MARKDOWN = "# 售后\n\n## 仅退款\n没收到货可以申请仅退款。\n\n## 保证金\n店铺注销后可以退保证金。\n"
JSONL = '{"question": "申诉视频怎么拍？", "answer": "手持身份证正对镜头。"}\n'


@pytest.fixture
def db(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


def run(database_url: str | None, *args: str, **env: str) -> Result:
    environment = {"DATABASE_URL": database_url or "", "COLUMNS": "200", **env}
    return CliRunner().invoke(app, ["kb", *args], env=environment)


def titles(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [t for (t,) in conn.execute("SELECT title FROM kb_passages ORDER BY title")]


@pytest.mark.parametrize(
    ("name", "text", "count"), [("faq.csv", CSV, 2), ("a.md", MARKDOWN, 2), ("q.jsonl", JSONL, 1)]
)
def test_import_each_format_then_again_changes_nothing(
    db: str, tmp_path: Path, name: str, text: str, count: int
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    first = run(db, "import", str(path), "--no-progress")
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == (
        f"{name}: {count} passages read, {count} new, 0 updated, 0 unchanged; {count} passages in the knowledge base"
    )
    again = run(db, "import", str(path))
    assert again.exit_code == 0, again.output
    assert f"0 new, 0 updated, {count} unchanged; {count} passages" in again.stdout
    assert len(titles(db)) == count


def test_the_builtin_set_and_replace(db: str, tmp_path: Path) -> None:
    result = run(db, "import", "--builtin")
    assert result.exit_code == 0, result.output
    assert "kb_channels_shop.jsonl: 47 passages read, 47 new" in result.stdout

    path = tmp_path / "faq.csv"
    path.write_text(CSV, encoding="utf-8")
    run(db, "import", str(path), "--source", "faq")
    path.write_text("question,answer\n怎么绑定手机号？,在账号与安全里绑定手机号。\n", encoding="utf-8")
    replaced = run(db, "import", str(path), "--source", "faq", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert "faq: 1 passages read, 0 new, 1 updated, 0 unchanged, 1 removed; 48 passages" in replaced.stdout


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("bad.jsonl", '{"question": "q", "answer": "a"}\n{"question": \n', "bad.jsonl:2: not JSON"),
        ("bad.csv", "question,answer\n问题,答案\n只有问题,\n", "bad.csv:3: no answer to '只有问题'"),
        ("bad.md", "# 标题\n正文\n```\n", "bad.md: a code block opened with ``` is never closed"),
        ("bad.pdf", "x", "cannot tell the format of 'bad.pdf'"),
        ("empty.csv", "question,answer\n", "empty.csv: no passages in this csv file"),
    ],
)
def test_a_bad_file_is_exit_2_with_its_line_and_nothing_imported(
    db: str, tmp_path: Path, name: str, content: str, said: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = run(db, "import", str(path))
    assert result.exit_code == 2
    assert said in " ".join(result.stderr.split()).replace(str(tmp_path) + "/", "")
    assert titles(db) == []


def test_a_non_utf8_file_needs_its_encoding(db: str, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("问题,答案\n怎么退款,在售后列表处理\n".encode("gb18030"))
    refused = run(db, "import", str(path))
    assert refused.exit_code == 2 and "excel.csv:1: not valid utf-8" in " ".join(refused.stderr.split())
    accepted = run(db, "import", str(path), "--encoding", "gb18030")
    assert accepted.exit_code == 0, accepted.output
    assert titles(db) == ["怎么退款"]


def test_usage_errors(db: str, tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text(CSV, encoding="utf-8")
    assert "DATABASE_URL not set" in run(None, "import", str(path)).stderr
    assert run(None, "import", str(path)).exit_code == 2
    assert run(db, "import").exit_code == 2 and "give a FILE or --builtin" in run(db, "import").stderr
    unreachable = run("postgresql://nobody@127.0.0.1:1/x", "import", str(path))
    assert unreachable.exit_code == 2 and "cannot reach the database" in unreachable.stderr
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP TABLE kb_passages")
    unmigrated = run(db, "import", str(path))
    assert unmigrated.exit_code == 2 and "worktool migrate up" in unmigrated.stderr


def test_search_local_and_remote(db: str) -> None:
    run(db, "import", "--builtin")
    found = run(db, "search", "申诉的视频要怎么录", "--json", "-n", "3")
    assert found.exit_code == 0, found.output
    passages = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(passages) == 3 and passages[0]["title"] == "申诉要求上传自拍视频，应该怎么拍？"
    assert passages[0]["source"].startswith("kb_channels_shop.jsonl:")
    table = run(db, "search", "保证金能退吗")
    assert table.exit_code == 0 and "1. 视频号小店的保证金要交多少，怎么退？" in table.stdout
    nothing = run(db, "search", "天气预报")
    assert nothing.exit_code == 1 and "no passages" in nothing.stderr

    with FakeTaxKB(api_key="cli-test-taxkb-key-123456") as remote:
        env = {
            "WORKTOOL_TAXKB_BASE_URL": remote.base_url,
            "WORKTOOL_TAXKB_API_KEY": "cli-test-taxkb-key-123456",
        }
        answer = run(db, "search", "增值税起征点", "--json", **env)
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout.splitlines()[0])["id"] == "taxkb:tax-001"
    assert "cli-test-taxkb-key" not in answer.output
    assert run(None, "search", "x", WORKTOOL_KB="postgres").exit_code == 2
