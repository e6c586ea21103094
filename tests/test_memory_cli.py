"""`localctx memory …` and `localctx where`: one JSON object with --json, one error line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from localctx import paths
from localctx.cli import main
from localctx.errors import Exit
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotIdentity, SnapshotStore


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


@pytest.fixture
def seeded() -> dict[str, str]:
    store = RecallStore()
    sid = store.session_id("work")
    m1 = store.add_message(sid, "user", "The access code for the blue depot is 4471.")
    m2 = store.add_message(sid, "assistant", "Noted.")
    seg = store.add_segment(sid, seq=0, text="blue depot 4471", n_tokens=4, message_ids=[m1])
    store.set_summary(seg, "Blue depot code 4471.")
    cid = store.add_core("The user's name is Ana.")
    store.close()
    ident = SnapshotIdentity("ab" * 32, "m", "x", "f16", "f16", 512, False, None)
    SnapshotStore().save(ident, [1, 2], b"s", {"kind": "session", "message_ids": [m1]})
    return {"m1": f"m{m1}", "m2": f"m{m2}", "seg": f"s{seg}", "core": f"c{cid}"}


def test_list_search_show_export_stats(seeded: dict[str, str]) -> None:
    items = json.loads(cli("memory", "list", "--json"))["items"]
    assert {i["id"] for i in items} == set(seeded.values())
    hits = json.loads(cli("memory", "search", 'blue "depot AND *', "--json"))["hits"]
    assert {h["id"] for h in hits} == {seeded["m1"], seeded["seg"]}
    shown = json.loads(cli("memory", "show", seeded["seg"], "--json"))
    assert shown["summary"] == "Blue depot code 4471." and shown["session"] == "work"
    assert "Blue depot code 4471." in cli("memory", "show", seeded["seg"])
    lines = cli("memory", "export").strip().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["id"] for line in lines)
    assert len(json.loads(cli("memory", "export", "--json"))["items"]) == 4
    stats = json.loads(cli("memory", "stats", "--json"))
    assert stats["messages"] == 2 and stats["segments"] == 1 and stats["core"] == 1
    assert stats["snapshots"] == 1 and stats["recall_bytes"] > 0


def test_forget_by_id_cascades_to_segments_and_snapshots(seeded: dict[str, str]) -> None:
    out = json.loads(cli("memory", "forget", seeded["m1"], "--json"))
    assert set(out["forgotten"]) == {seeded["m1"], seeded["seg"]}
    assert out["snapshots_deleted"] == 1
    assert json.loads(cli("memory", "search", "4471", "--json"))["hits"] == []
    assert "nothing matched" in cli("memory", "forget", "zebra")


def test_show_unknown_id_is_one_error_line(seeded: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["memory", "show", "s999"])
    assert result.exit_code == int(Exit.BAD_INPUT)
    assert result.output.strip().splitlines() == [
        "localctx: no memory item 's999' (ids look like m12, s3, c2)"
    ]


def test_forget_without_words_is_bad_input(seeded: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["memory", "forget", "the *"])
    assert result.exit_code == int(Exit.BAD_INPUT)


def test_corrupt_store_is_a_clear_error_and_left_alone() -> None:
    path = paths.db_dir() / "recall.sqlite3"
    path.write_bytes(b"definitely not sqlite" * 50)
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["memory", "stats", "--json"])
    assert result.exit_code == int(Exit.STORE_CORRUPT)
    assert result.output.count("\n") == 1 and "left as is" in result.output
    assert path.read_bytes() == before


def test_where_prints_paths(tmp_path: Path) -> None:
    found = json.loads(cli("where", "--json"))
    assert set(found) == {"db", "data", "models"}
    assert found["data"] == os.environ["LOCALCTX_HOME"]
    assert cli("where", "db").strip() == found["db"]
    assert stat.S_IMODE(Path(found["db"]).stat().st_mode) == 0o700
    assert CliRunner().invoke(main, ["where", "nowhere"]).exit_code == int(Exit.USAGE)


def test_memory_sessions_lists_names_sizes_and_the_newest_message(seeded: dict[str, str]) -> None:
    data = json.loads(cli("memory", "sessions", "--json"))
    (work,) = data["sessions"]
    assert work["name"] == "work" and work["messages"] == 2
    assert work["last_role"] == "assistant" and work["last_text"] == "Noted."
    assert work["text_bytes"] == len("The access code for the blue depot is 4471.Noted.")
    line = cli("memory", "sessions").strip()
    assert line.startswith("work") and "2 msgs" in line and "assistant: Noted." in line
