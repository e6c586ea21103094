"""The product-path benchmark (Session + window + gauge vs raw llama-cpp-python) runs and
compares like with like: same greedy tokens over the whole budget, also after the raw runner
adopted the session's state (the 32K-128K path). Speeds are reported, never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.engine import EngineSettings

pytestmark = pytest.mark.real
TEXT = (Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt").read_text()


@pytest.mark.parametrize("interleaved", [4096, 0])  # 0: all history via state adoption
def test_the_product_path_matches_raw_token_for_token(
    smollm_path: Path, interleaved: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import localctx.bench.product as product

    monkeypatch.setattr(product, "INTERLEAVED_PREFILL", interleaved)
    monkeypatch.setattr(product, "GAUGE_HZ", 20.0)  # some samples within a short run
    settings = EngineSettings(model_path=smollm_path, n_ctx=1536, n_threads=1)
    point = product.compare_product(settings, TEXT, decode_tokens=8)
    assert point.outputs_match  # equal length (2n + 1) and equal tokens
    assert point.decode_tokens == 8 and point.cells > 600
    if interleaved:
        assert point.prefill_pairs >= 1 and point.prefill_ratio > 0
    else:
        assert point.prefill_pairs == 0  # raw never prefilled the history: it adopted it
    assert point.session_decode_tps > 0 and point.raw_decode_tps > 0
