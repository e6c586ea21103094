"""Re-ranking code-search hits with the loaded chat model: a yes/no relevance logit per hit.

For each candidate the model reads the question, then the hit (path, symbol, its first lines),
then "Does this code answer the question?", and the hit is scored by the log-odds of the first
token of its reply being "yes" rather than "no" (one forward pass, nothing generated). The
question comes first, so the prompt's head is decoded once and only each hit's tail is
prefilled again (the cache is cut back to the shared prefix between hits).

The new order is a reciprocal-rank fusion of the search's own order and the model's, so one
confident mistake of a small model cannot bury the search's best hit.

Cost: about `snippet_tokens` + 30 prefilled tokens per hit; with 20 hits that is seconds on a
CPU, far over an interactive query's budget, which is why only `bench retrieval --rerank`
runs it (measured in the README's ablation). Must not: own the KV cache (it clobbers it:
the caller lends it, as for the summarizer) or import llama_cpp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from localctx.engine.base import Engine
from localctx.memory.archival import ArchivalHit
from localctx.memory.dense import rrf

RERANK_QUESTION = "A question about the source code of {project}:\n{question}\n\n"
RERANK_HIT = (
    "A piece of that source code ({where}):\n```\n{snippet}\n```\n\n"
    "Does this piece of code contain the answer to the question? Reply yes or no."
)
SNIPPET_TOKENS = 160  # the hit's first tokens shown to the model
POOL = 20  # hits re-ranked
MODEL_WEIGHT = 1.0  # the model's order in the fusion, against the search's 1.0


def _token_ids(engine: Engine, words: Sequence[str]) -> list[int]:
    """The first token of each spelling ("yes", "Yes", " yes"...), de-duplicated."""
    ids: list[int] = []
    for word in words:
        toks = engine.tokenize(word)
        if toks and toks[0] not in ids:
            ids.append(toks[0])
    return ids


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + float(np.log(np.exp(values - top).sum()))


def relevance_scores(
    engine: Engine,
    question: str,
    hits: Sequence[ArchivalHit],
    project: str,
    snippet_tokens: int = SNIPPET_TOKENS,
) -> list[float]:
    """log P(yes) - log P(no) for each hit, in order (clobbers the KV cache)."""
    yes = _token_ids(engine, ["yes", "Yes", " yes", " Yes"])
    no = _token_ids(engine, ["no", "No", " no", " No"])
    head = RERANK_QUESTION.format(project=project, question=question.strip())
    engine.kv_clear()
    scores: list[float] = []
    for hit in hits:
        snippet_ids = engine.tokenize(hit.text)[:snippet_tokens]
        where = f"{hit.path}, {hit.symbol}" if hit.symbol else hit.path
        body = RERANK_HIT.format(where=where, snippet=engine.detokenize(snippet_ids).strip())
        prompt = engine.format_chat([{"role": "user", "content": head + body}])
        tokens = engine.tokenize(prompt, add_special=True)
        held = engine.tokens
        shared = 0
        for a, b in zip(held, tokens, strict=False):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(tokens) - 1)  # at least one token decoded: fresh logits
        if shared < len(held):
            engine.kv_remove(shared, -1)
        engine.decode(tokens[shared:])
        logits = np.asarray(engine.last_logits(), dtype=np.float64)
        scores.append(_logsumexp(logits[yes]) - _logsumexp(logits[no]))
    engine.kv_clear()
    return scores


def rerank(
    engine: Engine,
    question: str,
    hits: Sequence[ArchivalHit],
    project: str,
    *,
    pool: int = POOL,
    snippet_tokens: int = SNIPPET_TOKENS,
    model_weight: float = MODEL_WEIGHT,
) -> list[ArchivalHit]:
    """The first `pool` hits re-ordered by fusing the search's order with the model's."""
    head, tail = list(hits[:pool]), list(hits[pool:])
    if len(head) < 2:
        return list(hits)
    scores = relevance_scores(engine, question, head, project, snippet_tokens)
    by_model = sorted(range(len(head)), key=lambda i: -scores[i])
    fused = rrf([list(range(len(head))), by_model], weights=(1.0, model_weight))
    return [replace(head[i], score=s) for i, s in fused] + tail
