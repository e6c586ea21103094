"""Ingest against hostile trees (issue #14, cases 7, 11 and 12): secrets found by content as
well as by name, links that cannot be read or loop, files swapped after the walk, and a huge
file read in bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localctx.ingest.reader import read_source
from localctx.ingest.rules import Skip, secret_in
from localctx.ingest.walker import SourceFile
from tests.clirun import ROOT, cli

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA1x3mQ0zGv0Rk1Qm8zC5Wz0K2n3Zb6mH1yq9wYxq0Vn7oQe3Lk4tUv\n"
    "8Jq2pRz6Wc1aBn3Yx5Ls7Gh2Df4Ke9Mv1Pq3Tr6Wy8Za0Bc2De4Fg6Hi8Jk0Lm2No4Pq6\n"
    "-----END RSA PRIVATE KEY-----\n"
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def ingest(repo: Path, *extra: str) -> dict[str, object]:
    out = cli("ingest", str(repo), "--no-dense", "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def search(repo: Path, query: str) -> list[str]:
    out = cli("memory", "search", "--repo", str(repo), query, "--json")
    assert out.returncode == 0, out.stderr
    return [hit["path"] for hit in json.loads(out.stdout)["hits"]]


def test_keys_and_tokens_under_ordinary_names_are_refused_by_content(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "backup.txt").write_text(f"zebracopy of the deploy key\n{PEM}")
    (repo / "settings.py").write_text('AWS_KEY = "AKIAZ7QW3RTY5UIO2PLK"  # zebraaws\n')
    (repo / "deploy.sh").write_text("export GH=ghp_" + "a1B2c3D4e5" * 4 + "  # zebragh\n")
    (repo / "chat.md").write_text("slack: xoxb-123456789012-abcdefghijklmn zebraslack\n")
    (repo / "auth_fixture.py").write_text(f'TOKEN = "{JWT}"  # zebrajwt\n')
    # Not secrets: AWS's documented example key, and a PEM header alone (code that writes PEM)
    (repo / "docs" / "aws.md").write_text("Use AKIAIOSFODNN7EXAMPLE, zebraexample.\n")
    (repo / "pemwriter.py").write_text('HEADER = "-----BEGIN RSA PRIVATE KEY-----"  # zebrapem\n')
    for rel in (".kube/config", ".docker/config.json", ".ssh/config", "prod.tfvars",
                ".bash_history", "ops/.zsh_history"):  # fmt: skip
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("zebraname token=hunter2\n")
    report = ingest(repo)
    skipped = report["skipped"]
    assert isinstance(skipped, dict)
    assert skipped.get("secret_content") == 5, skipped
    assert skipped.get("secret") == 6, skipped
    assert report["files_indexed"] == 2
    for word in ("zebracopy", "zebraaws", "zebragh", "zebraslack", "zebrajwt", "zebraname"):
        assert search(repo, word) == [], word
    assert search(repo, "zebraexample") == ["docs/aws.md"]
    assert search(repo, "zebrapem") == ["pemwriter.py"]
    # The override lets one in, by path or name, as it does for names.
    again = ingest(repo, "--allow-secret", "backup.txt")
    assert again["skipped"]["secret_content"] == 4  # type: ignore[index]
    assert search(repo, "zebracopy") == ["backup.txt"]


def test_the_content_rules_name_the_kind_never_the_secret() -> None:
    assert secret_in(PEM.encode()) == "private key"
    assert secret_in(JWT.encode()) == "JWT"
    assert secret_in(b"id = 'XAKIAZ7QW3RTY5UIO2PLK'") is None  # inside a longer word
    assert secret_in(b"plain code, no tokens: ghp_short") is None


def test_a_file_swapped_for_a_link_after_the_walk_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "outside-secret.txt"
    target.write_text("zebraoutside\n")
    walked = tmp_path / "repo" / "notes.txt"
    walked.parent.mkdir()
    walked.write_text("ordinary notes\n")
    file = SourceFile("notes.txt", str(walked), walked.stat().st_size, walked.stat().st_mtime_ns)
    walked.unlink()
    walked.symlink_to(target)  # the race: a link replaces the file between walk and read
    assert read_source(file, 1 << 20) is Skip.SYMLINK_OUTSIDE
    os.mkfifo(walked.with_name("fifo"))
    fifo = SourceFile("fifo", str(walked.with_name("fifo")), 1, 0)
    assert read_source(fifo, 1 << 20) is Skip.NOT_REGULAR  # and never blocks on open


def test_a_link_that_cannot_be_read_is_counted_not_a_crash(tmp_path: Path) -> None:
    unreadable = next(
        (
            f"/proc/{p}/exe"
            for p in sorted(os.listdir("/proc"))
            if p.isdigit() and _readlink_fails(f"/proc/{p}/exe")
        ),
        None,
    )
    if unreadable is None:
        pytest.skip("no /proc/N/exe link here that cannot be read (a kernel thread's)")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("def main():\n    return 0\n")
    (repo / "kernel-exe").symlink_to(unreadable)
    report = ingest(repo)
    assert report["files_indexed"] == 1
    assert report["skipped"] == {"symlink_broken": 1}


def _readlink_fails(path: str) -> bool:
    """A kernel thread's exe link: it exists, and reading it says there is nothing."""
    try:
        os.readlink(path)
    except FileNotFoundError:
        return os.path.lexists(path)
    except OSError:
        return False
    return False


def test_a_two_link_symlink_loop_is_counted_as_a_loop(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("x = 1\n")
    (repo / "a").symlink_to("b")
    (repo / "b").symlink_to("a")
    assert ingest(repo)["skipped"] == {"symlink_loop": 2}


CHILD = r"""
import json, resource, sys
from localctx.ingest import WalkOptions, ingest_repo
from localctx.memory.archival import ArchivalStore
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ArchivalStore.open() as store:
    report = ingest_repo(sys.argv[1], store, WalkOptions(max_file_bytes=int(sys.argv[2])))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kb": peak - before, "report": report.to_json()}))
"""


def test_a_huge_file_is_streamed_in_memory_well_under_its_size(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    size = 40 << 20
    line = "retry the request with exponential backoff and jitter until the deadline\n"
    with open(repo / "huge.log", "w") as fh:
        for i in range(size // len(line)):
            fh.write(line if i % 50_000 else f"checkpoint zebra{i} reached\n")
        fh.write("the last line names zebralast\n")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(repo), str(size * 2)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["report"]["files_indexed"] == 1
    # Memory does not grow with the file: read at once, 40 MB cost ~650 MB here.
    assert result["growth_kb"] * 1024 < size, result["growth_kb"]
    assert search(repo, "zebralast") == ["huge.log"]
    assert search(repo, "zebra50000") == ["huge.log"]
