"""What the chat app costs a reply: decode tok/s through the app vs the bare session.

`python -m localctx.tui.bench [--model M] [--rounds N] [--max-tokens N]` runs the same
greedy question through `Session.ask` and through the app (headless, Pilot-driven, gauge
sampling at its busy rate), alternating so machine noise hits both alike, and prints one JSON
object: median decode tok/s of each, their ratio, transcript updates and gauge readings per
second of generation, and the CPU share the UI thread used during the turn (a figure that
machine noise moves far less than tok/s on a shared 2-core box). Both runs use fresh sessions
on one loaded engine, both decode on a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import threading
import time
from typing import Any

import click

from localctx.engine import Sampling, load_engine
from localctx.engine.base import Engine
from localctx.runconfig import engine_settings
from localctx.session import Session
from localctx.tui.app import make_app
from localctx.tui.messages import GaugeSampled, GenerationFinished, TokensGenerated
from localctx.tui.settings import ChatSettings
from localctx.tui.widgets.chat.prompt import PromptInput

QUESTION = "Explain in detail how a lighthouse works, with its history."


def bare_turn(engine: Engine, sampling: Sampling) -> float:
    """One turn of the bare session, on a worker thread as the app runs it: decoding from the
    main thread measured 3-6x slower here (2 loaded cores), which would flatter the app."""
    results: list[float] = []

    def run() -> None:
        engine.kv_clear()
        results.append(Session(engine).ask(QUESTION, sampling).decode_tps)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return results[0]


async def app_turn(engine: Engine, settings: ChatSettings) -> dict[str, float]:
    engine.kv_clear()
    counts = {"batches": 0, "readings": 0}
    finished = asyncio.Event()

    def hook(message: Any) -> None:
        if isinstance(message, TokensGenerated):
            counts["batches"] += 1
        elif isinstance(message, GaugeSampled):
            counts["readings"] += 1
        elif isinstance(message, GenerationFinished):
            finished.set()

    app = make_app(settings, engine=engine, session_factory=lambda e, s: Session(e))
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        while app.session is None or app.loading:
            await pilot.pause(0.05)
        counts["readings"] = 0
        app.query_one(PromptInput).load_text(QUESTION)
        app.query_one(PromptInput).focus()
        start, ui_start = time.perf_counter(), time.thread_time()
        await pilot.press("enter")
        await asyncio.wait_for(finished.wait(), timeout=600)
        seconds = time.perf_counter() - start
        ui_cpu = time.thread_time() - ui_start  # the event loop's thread: all UI work
        await app.workers.wait_for_complete()
    return {
        "decode_tps": engine.stats.decode_tps,
        "batches_per_s": counts["batches"] / seconds,
        "readings_per_s": counts["readings"] / seconds,
        "ui_cpu_share": ui_cpu / seconds,
    }


@click.command()
@click.option("--model", default=None)
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--max-tokens", type=int, default=128, show_default=True)
def main(model: str | None, rounds: int, max_tokens: int) -> None:
    """Decode tok/s of the bare session vs the chat app, alternated."""
    settings = engine_settings(model=model, n_ctx=2048)
    sampling = Sampling(max_tokens=max_tokens)
    chat = ChatSettings(engine=settings, model_name=model, sampling=sampling)
    bare: list[float] = []
    in_app: list[dict[str, float]] = []
    with load_engine(settings) as engine:
        bare_turn(engine, Sampling(max_tokens=8))  # warm-up
        for _ in range(rounds):
            bare.append(bare_turn(engine, sampling))
            in_app.append(asyncio.run(app_turn(engine, chat)))
    app_tps = statistics.median(r["decode_tps"] for r in in_app)
    bare_tps = statistics.median(bare)
    json.dump(
        {
            "model": str(settings.model_path.name),
            "rounds": rounds,
            "max_tokens": max_tokens,
            "bare_decode_tps": round(bare_tps, 2),
            "app_decode_tps": round(app_tps, 2),
            "app_over_bare": round(app_tps / bare_tps, 3) if bare_tps else None,
            "transcript_updates_per_s": round(
                statistics.median(r["batches_per_s"] for r in in_app), 2
            ),
            "gauge_readings_per_s": round(
                statistics.median(r["readings_per_s"] for r in in_app), 2
            ),
            # CPU the UI thread used per second of a turn: what the app can take from decoding.
            "ui_cpu_share": round(statistics.median(r["ui_cpu_share"] for r in in_app), 4),
            "bare_runs": [round(x, 2) for x in bare],
            "app_runs": [round(r["decode_tps"], 2) for r in in_app],
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
