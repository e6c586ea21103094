"""Shared fixtures. The user's own files never reach a test: LOCALCTX_HOME points at tmp_path.

Models are the embedded defaults installed by scripts/setup.sh (from PyPI packages); their
directory is resolved before the home is moved, so real-model tests find them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localctx import paths
from localctx.models.catalogue import Catalogue

_REAL_MODELS_DIR = Path(os.environ.get("LOCALCTX_MODELS") or paths.models_dir())
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "localctx-home"
    monkeypatch.setenv("LOCALCTX_HOME", str(home))
    monkeypatch.setenv("LOCALCTX_MODELS", str(_REAL_MODELS_DIR))
    # SmolLM2-135M is the fast model of most real-model tests (the product's default is the
    # 0.5B code model, ~4x slower here); tests of the default itself unset this.
    monkeypatch.setenv("LOCALCTX_MODEL", "smollm2-135m")
    monkeypatch.delenv("LOCALCTX_DEBUG", raising=False)
    return home


def _model(name: str) -> Path:
    entry = Catalogue.load().get(name)
    path = _REAL_MODELS_DIR / entry.file
    if not path.is_file():
        pytest.fail(f"{name} is not installed: run scripts/setup.sh {name}")
    return path


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    return _model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return _model("gemma3-270m")


@pytest.fixture(scope="session")
def qwen05_path() -> Path:
    return _model("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def qwen15_path() -> Path:
    return _model("qwen2.5-coder-1.5b")


@pytest.fixture
def smollm(smollm_path: Path) -> Iterator[object]:
    """A fresh real engine on the default model (f16 KV, 2K context): loads in ~0.3 s."""
    from localctx.engine import EngineSettings, load_engine

    with load_engine(EngineSettings(model_path=smollm_path, n_ctx=2048)) as engine:
        yield engine
