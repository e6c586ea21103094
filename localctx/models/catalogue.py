"""Parse models.toml and turn a name or a path into a GGUF file on disk.

The catalogue file lives at the repository root (the layout users read); an installed wheel
carries a copy inside the package. `LOCALCTX_CATALOGUE` points at another file (tests use it);
`LOCALCTX_MODEL` names the model used where none is chosen (default: the entry marked
`default`, the Qwen2.5-Coder 0.5B code model; the tests pick the faster SmolLM2-135M).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from localctx import paths
from localctx.errors import BadInput, ChecksumMismatch, ModelNotFound
from localctx.models.verify import verified

_FIELDS = {
    "default", "title", "file", "sha256", "size", "context_length", "license", "source",
    "packages", "members", "repo", "notes", "kind", "convert", "revision",
}  # fmt: skip


@dataclass(frozen=True)
class ModelEntry:
    """One catalogue entry: where the GGUF comes from and what it is."""

    name: str
    file: str
    source: str  # "pypi" or "hf"
    title: str = ""
    sha256: str = ""
    size: int = 0
    context_length: int = 0
    license: str = ""
    notes: str = ""
    default: bool = False
    packages: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    repo: str = ""
    revision: str = ""  # a hub commit to pull from (pinned with sha256 and size)
    kind: str = "chat"  # "chat" | "embedding" (never loaded for chat)
    convert: str = ""  # a converter run on pull ("minilm": sentence-transformers zip -> GGUF)

    @property
    def path(self) -> Path:
        """Where the pulled file lives (it may not exist yet)."""
        return paths.models_dir() / self.file

    @property
    def pinned(self) -> bool:
        """Its bytes are pinned here (sha256), or come from a pinned archive (convert)."""
        return bool(self.sha256) or bool(self.convert)

    @property
    def installed(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True)
class Catalogue:
    entries: dict[str, ModelEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        path = path or catalogue_path()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadInput(f"cannot read the model catalogue {path}: {exc}") from exc
        entries: dict[str, ModelEntry] = {}
        for name, raw in data.get("models", {}).items():
            unknown = set(raw) - _FIELDS
            if unknown:
                raise BadInput(f"models.toml [{name}]: unknown keys {sorted(unknown)}")
            if "file" not in raw or raw.get("source") not in ("pypi", "hf"):
                raise BadInput(f"models.toml [{name}]: needs `file` and source pypi|hf")
            if raw["source"] == "pypi" and len(raw.get("members", [])) < 1:
                raise BadInput(f"models.toml [{name}]: a pypi source needs `members`")
            if raw.get("kind", "chat") not in ("chat", "embedding"):
                raise BadInput(f"models.toml [{name}]: kind is chat or embedding")
            if raw["source"] == "hf" and not raw.get("repo"):
                raise BadInput(f"models.toml [{name}]: an hf source needs `repo`")
            raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
            entries[name] = ModelEntry(name=name, **raw)
        return cls(entries)

    @property
    def default(self) -> ModelEntry:
        chosen = os.environ.get("LOCALCTX_MODEL", "").strip()
        if chosen:
            return self.get(chosen)
        for entry in self.entries.values():
            if entry.default:
                return entry
        return next(e for e in self.entries.values() if e.kind == "chat")

    @property
    def embedding(self) -> ModelEntry | None:
        """The embedding model dense code search uses (the first of kind "embedding")."""
        return next((e for e in self.entries.values() if e.kind == "embedding"), None)

    def get(self, name: str) -> ModelEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            raise ModelNotFound(
                f"unknown model '{name}' (known: {known}; or give a .gguf path)"
            ) from None


def catalogue_path() -> Path:
    override = os.environ.get("LOCALCTX_CATALOGUE")
    if override:
        return Path(override)
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir.parent / "models.toml", package_dir / "models.toml"):
        if candidate.is_file():
            return candidate
    raise BadInput("models.toml not found next to the localctx package")


def resolve_model(name_or_path: str | None, catalogue: Catalogue | None = None) -> Path:
    """A catalogue name (pulled already) or a path to a .gguf file -> an existing file.

    `None` means the catalogue default. Nothing is downloaded here: a missing catalogue model
    tells the user the `models pull` command to run.
    """
    catalogue = catalogue or Catalogue.load()
    if name_or_path is None:
        name_or_path = catalogue.default.name
    looks_like_path = name_or_path.endswith(".gguf") or os.sep in name_or_path
    if looks_like_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelNotFound(f"model file not found: {path}")
        return path
    entry = catalogue.get(name_or_path)
    if not entry.installed:
        raise ModelNotFound(
            f"model '{entry.name}' is not installed; run: localctx models pull {entry.name}"
        )
    if not verified(entry):
        raise ChecksumMismatch(
            f"{entry.path} is not the pinned {entry.name} (size or sha256 differ);"
            f" run: localctx models pull {entry.name}"
        )
    return entry.path
