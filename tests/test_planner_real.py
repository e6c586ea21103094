"""The planner's predictions against what llama.cpp really allocates, on the embedded models.

KV bytes: llama.cpp's own report (engine.kv_allocation(), parsed from its log) must be within
1% of the prediction for every cache type, at 8K and 32K, with SWA bounded (Gemma-3).
Totals: the RSS a fresh process grows by when it loads the model and prefills one ubatch
(512 tokens, which touches the compute buffer a chat uses) must be within 10% of the plan's
total. Measured in a subprocess so other tests' allocations cannot skew it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.bench.planner import measured_footprint, predicted_total
from localctx.engine import EngineSettings, load_engine
from localctx.planner.kvmath import kv_sizing
from localctx.planner.shape import load_shape

pytestmark = pytest.mark.real
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("kv", ["f16", "q8_0", "q4_0"])
@pytest.mark.parametrize("model", ["smollm_path", "gemma_path"])
def test_predicted_kv_bytes_within_1pct_of_llama_cpp(
    model: str, kv: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(model)
    shape = load_shape(path)
    for n_ctx in (8192, 32768):
        settings = EngineSettings(path, n_ctx=n_ctx, type_k=kv, type_v=kv, force=True)
        with load_engine(settings) as engine:
            alloc = engine.kv_allocation()
        predicted = kv_sizing(shape, kv, kv, n_ctx)
        assert alloc.total_bytes == pytest.approx(predicted.total_bytes, rel=0.01), (n_ctx, kv)
        expected_cells = (
            (predicted.cells, predicted.swa_cells) if shape.window else (predicted.cells,)
        )
        assert alloc.cells == expected_cells


def test_state_size_grows_by_the_predicted_bytes_per_token(smollm_path: Path) -> None:
    """A second witness: the sequence state holds exactly bytes_per_token per cell."""
    per_token = kv_sizing(load_shape(smollm_path), "f16", "f16", 2048).bytes_per_token
    text = (DATA / "devils-dictionary-excerpt.txt").read_text()[:4000]
    with load_engine(EngineSettings(smollm_path, n_ctx=2048, n_threads=1)) as engine:
        tokens = engine.tokenize(text)
        engine.decode(tokens[:40])
        small = len(engine.state_get())
        engine.decode(tokens[40:140])
        large = len(engine.state_get())
    assert (large - small) == pytest.approx(100 * per_token, rel=0.01)


@pytest.mark.parametrize("n_ctx", [8192, 32768])
def test_total_within_10pct_of_the_process_footprint_smollm(smollm_path: Path, n_ctx: int) -> None:
    measured = measured_footprint(smollm_path, n_ctx, "f16", threads=1)
    predicted = predicted_total(smollm_path, n_ctx, "f16")
    assert measured["after_prefill"] == pytest.approx(predicted, rel=0.10)
    assert measured["load"] == pytest.approx(predicted, rel=0.10)


@pytest.mark.parametrize(
    ("n_ctx", "kv"),
    [(8192, "f16"), (32768, "f16"), pytest.param(32768, "q4_0", marks=pytest.mark.slow)],
)
def test_total_within_10pct_of_the_process_footprint_gemma(
    gemma_path: Path, n_ctx: int, kv: str
) -> None:
    measured = measured_footprint(gemma_path, n_ctx, kv, threads=1)
    predicted = predicted_total(gemma_path, n_ctx, kv)
    assert measured["after_prefill"] == pytest.approx(predicted, rel=0.10)
    assert measured["load"] == pytest.approx(predicted, rel=0.10)
