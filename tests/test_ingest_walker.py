"""Walker rules on a tree built in tmp: ignore files at every level, secrets, binaries, links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localctx.ingest import walker as walker_mod
from localctx.ingest.reader import SourceText, read_source
from localctx.ingest.rules import Skip, is_secret, skip_by_content
from localctx.ingest.walker import Skipped, SourceFile, WalkOptions, walk


def _write(root: Path, rel: str, data: str | bytes = "x = 1\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def _run(root: Path, options: WalkOptions | None = None) -> tuple[set[str], dict[str, Skip]]:
    files: set[str] = set()
    skipped: dict[str, Skip] = {}
    for item in walk(root, options):
        if isinstance(item, Skipped):
            skipped[item.relpath] = item.reason
        else:
            files.add(item.relpath)
    return files, skipped


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    _write(root, ".gitignore", "*.log\n!keep.log\nbuild/\n/only_root.txt\n")
    _write(root, "src/app.py")
    _write(root, "src/.gitignore", "generated_*.py\n!generated_ok.py\n")
    _write(root, "src/generated_a.py")
    _write(root, "src/generated_ok.py")
    _write(root, "src/deep/.gitignore", "!*.log\nsecret_notes.md\n")
    _write(root, "src/deep/trace.log", "re-included by the deeper .gitignore\n")
    _write(root, "src/deep/secret_notes.md", "# notes\n")
    _write(root, "debug.log", "noise\n")
    _write(root, "keep.log", "kept by negation\n")
    _write(root, "build/out.py")
    _write(root, "only_root.txt", "anchored to the root\n")
    _write(root, "sub/only_root.txt", "not anchored here\n")
    _write(root, ".git/config", "[core]\n")
    _write(root, ".git/info/exclude", "local_only.py\n")
    _write(root, "local_only.py")
    _write(root, ".localctxignore", "docs/drafts/\n")
    _write(root, "docs/drafts/wip.md", "# wip\n")
    _write(root, "docs/guide.md", "# Guide\n")
    return root


def test_gitignore_nesting_negation_and_anchoring(tree: Path) -> None:
    files, skipped = _run(tree)
    assert "src/app.py" in files
    assert skipped["src/generated_a.py"] is Skip.IGNORED
    assert "src/generated_ok.py" in files  # negated in the nested .gitignore
    assert skipped["debug.log"] is Skip.IGNORED
    assert "keep.log" in files  # negation at the root
    assert "src/deep/trace.log" in files  # a deeper .gitignore re-includes *.log
    assert skipped["src/deep/secret_notes.md"] is Skip.IGNORED
    assert skipped["build"] is Skip.IGNORED_DIR  # counted once, not entered
    assert skipped["only_root.txt"] is Skip.IGNORED
    assert "sub/only_root.txt" in files  # "/only_root.txt" is anchored to its .gitignore
    assert skipped[".git"] is Skip.VCS
    assert skipped["local_only.py"] is Skip.IGNORED  # .git/info/exclude
    assert skipped["docs/drafts"] is Skip.IGNORED_DIR  # .localctxignore
    assert "docs/guide.md" in files
    assert not any(f.startswith((".git/", "build/")) for f in files)


def test_localctxignore_overrides_gitignore_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _write(root, ".gitignore", "*.txt\n")
    _write(root, ".localctxignore", "!wanted.txt\n")
    _write(root, "wanted.txt", "hello\n")
    _write(root, "other.txt", "hello\n")
    files, skipped = _run(root)
    assert "wanted.txt" in files
    assert skipped["other.txt"] is Skip.IGNORED


def test_include_and_exclude_globs(tree: Path) -> None:
    files, skipped = _run(tree, WalkOptions(include=("*.py",), exclude=("src/deep/",)))
    assert files == {"src/app.py", "src/generated_ok.py"}
    assert skipped["src/deep"] is Skip.EXCLUDED
    assert skipped["docs/guide.md"] is Skip.NOT_INCLUDED


def test_secrets_are_never_candidates_unless_allowed_explicitly(tmp_path: Path) -> None:
    root = tmp_path / "r"
    names = [".env", ".env.production", "server.pem", "tls.key", "id_rsa", "id_ed25519.pub",
             "credentials", "aws/credentials.json", ".netrc", "prod.tfstate"]  # fmt: skip
    for name in names:
        _write(root, name, "API_KEY=sk-test-0000\n")
    _write(root, "settings.py", "DEBUG = False\n")
    files, skipped = _run(root)
    assert files == {"settings.py"}
    assert all(skipped[name] is Skip.SECRET for name in names)
    files, _ = _run(root, WalkOptions(allow_secrets=(".env.production",)))
    assert files == {"settings.py", ".env.production"}
    assert is_secret("ID_RSA", "ID_RSA")  # case-insensitive
    assert not is_secret("keyboard.py", "keyboard.py")


def test_binary_large_generated_and_lock_files(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _write(root, "logo.png", b"\x89PNG\r\n\x1a\n\0\0")
    _write(root, "blob.dat2", b"abc\0def" * 10)
    _write(root, "big.py", "x = 1\n" * 200_000)
    _write(root, "package-lock.json", "{}\n")
    _write(root, "dist/app.min.js", "var a=1;\n")
    _write(root, "bundle.js", "var a=" + "1+" * 2000 + "1;\n")
    _write(root, "api_pb2.py", "# Generated by the protocol buffer compiler.  DO NOT EDIT!\n")
    _write(root, "empty.py", "")
    _write(root, "ok.py", "def ok():\n    return 1\n")
    files, skipped = _run(root, WalkOptions(max_file_bytes=1 << 20))
    assert skipped["logo.png"] is Skip.BINARY
    assert skipped["big.py"] is Skip.TOO_LARGE
    assert skipped["package-lock.json"] is Skip.GENERATED
    assert skipped["dist/app.min.js"] is Skip.GENERATED
    assert skipped["empty.py"] is Skip.EMPTY
    by_content = {}
    for rel in ("blob.dat2", "bundle.js", "api_pb2.py", "ok.py"):
        st = (root / rel).stat()
        source = read_source(SourceFile(rel, str(root / rel), st.st_size, st.st_mtime_ns), 1 << 20)
        by_content[rel] = source if isinstance(source, Skip) else "text"
    assert by_content == {"blob.dat2": Skip.BINARY, "bundle.js": Skip.GENERATED,
                          "api_pb2.py": Skip.GENERATED, "ok.py": "text"}  # fmt: skip
    assert "ok.py" in files
    files, skipped = _run(root, WalkOptions(max_file_bytes=10))
    assert skipped["ok.py"] is Skip.TOO_LARGE


def test_non_utf8_is_decoded_with_replacement_and_flagged(tmp_path: Path) -> None:
    path = _write(tmp_path, "latin1.py", "name = 'café'\n".encode("latin-1"))
    st = path.stat()
    source = read_source(SourceFile("latin1.py", str(path), st.st_size, st.st_mtime_ns), 1 << 20)
    assert isinstance(source, SourceText)
    assert source.non_utf8 and "caf\ufffd" in source.text
    noise = _write(tmp_path, "noise.txt", bytes(range(128, 256)) * 40)
    st = noise.stat()
    assert read_source(SourceFile("noise.txt", str(noise), st.st_size, 0), 1 << 20) is Skip.BINARY


def test_symlinks_outside_loops_and_inside(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _write(root, "pkg/mod.py")
    _write(tmp_path / "outside", "secret_plan.py", "PLAN = 1\n")
    (root / "etc").symlink_to("/etc")
    (root / "escape.py").symlink_to(tmp_path / "outside" / "secret_plan.py")
    (root / "pkg" / "loop").symlink_to(root)  # a cycle back to the root
    (root / "alias.py").symlink_to(root / "pkg" / "mod.py")  # inside: followed
    (root / "dangling.py").symlink_to(root / "nowhere.py")
    (root / "key_link").symlink_to(_write(root, "keys/deploy.txt", "k"))
    (root / "deploy.pem").symlink_to(root / "keys" / "deploy.txt")
    files, skipped = _run(root)
    assert skipped["etc"] is Skip.SYMLINK_OUTSIDE
    assert skipped["escape.py"] is Skip.SYMLINK_OUTSIDE
    assert skipped["pkg/loop"] is Skip.SYMLINK_LOOP
    assert skipped["dangling.py"] is Skip.SYMLINK_BROKEN
    assert skipped["deploy.pem"] is Skip.SECRET
    assert {"pkg/mod.py", "alias.py", "keys/deploy.txt", "key_link"} <= files
    assert not any(f.startswith("etc/") for f in files)


def test_file_vanishing_during_the_walk(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _write(root, "a.py")
    _write(root, "b.py")
    seen = []
    for item in walk(root):
        seen.append(item)
        if item.relpath == "a.py":
            (root / "b.py").unlink()  # listed already, gone before its stat
    assert Skipped("b.py", Skip.VANISHED) in seen
    source = SourceFile("gone.py", str(root / "gone.py"), 5, 0)
    assert read_source(source, 1 << 20) is Skip.VANISHED


def test_walk_streams_one_directory_at_a_time(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "r"
    for i in range(300):
        _write(root, f"d{i:03}/f.py")
    listed = []
    real_scandir = os.scandir

    def counting_scandir(path):  # type: ignore[no-untyped-def]
        listed.append(path)
        return real_scandir(path)

    monkeypatch.setattr(walker_mod.os, "scandir", counting_scandir)
    first = next(iter(walk(root)))
    assert first.relpath == "d000/f.py"
    assert len(listed) == 2  # the root and d000: nothing else was read yet


def test_content_rules_are_pure() -> None:
    assert skip_by_content("a.py", b"print(1)\n") is None
    assert skip_by_content("a.py", b"\x00\x01") is Skip.BINARY
    assert skip_by_content("a.go", b"// Code generated by x. DO NOT EDIT.\npackage a") is (
        Skip.GENERATED
    )
    late = b"x = 1\n" * 10 + b"# this file is not autogenerated\n"
    assert skip_by_content("a.py", late) is None  # only a header marks generated code


def test_odd_names_a_git_file_and_fifos(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _write(root, "ok_é.py")  # UTF-8 names are fine
    (root / "sub").mkdir()
    (root / "sub" / ".git").write_text("gitdir: ../.git/modules/sub\n")  # a submodule's link
    os.mkfifo(root / "pipe.py")
    bad = os.fsencode(root) + b"/latin1_\xe9.py"
    with open(bad, "wb") as fh:
        fh.write(b"x = 1\n")
    files, skipped = _run(root)
    assert files == {"ok_é.py"}
    assert skipped["sub/.git"] is Skip.VCS
    assert skipped["pipe.py"] is Skip.NOT_REGULAR
    assert [r for r in skipped.values() if r is Skip.BAD_NAME] == [Skip.BAD_NAME]
