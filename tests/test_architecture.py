"""The headless core stays headless: checked in a clean interpreter per module.

import-linter checks the static imports (scripts/test.sh runs it); this checks what actually
lands in sys.modules, which also catches imports hidden in functions run at import time.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEADLESS = [
    "localctx.engine",
    "localctx.kv",
    "localctx.engine.cachetypes",
    "localctx.kv.segment",
    "localctx.memory",
    "localctx.memory.db",
    "localctx.ingest",
    "localctx.planner",
    "localctx.gauge",
    "localctx.models",
    "localctx.session",
    "localctx.turns",
    "localctx.context",
    "localctx.context.cache",
    "localctx.history",
    "localctx.lifecycle",
    "localctx.tiers",
    "localctx.session_base",
    "localctx.progress",
    "localctx.runconfig",
]


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_imports_neither_textual_nor_llama_cpp(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = [m for m in ('textual', 'llama_cpp', 'localctx.tui') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} pulled in {result.stdout.strip()}"
