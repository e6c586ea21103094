"""`localctx bench all`: every benchmark in one run, and the headline figures.

What it owns: which measurements run (the plan is a pure function of --quick/--model and the
installed models), in what order, the peak RSS of each, and the one JSON object they make.
The measurements themselves live beside it: bench/raw.py (localctx vs raw llama-cpp-python,
warm restore), and the other areas' modules (kv, ppl, needle, ingest, gauge, planner), which
are called when present and reported as "not available" when not — the suite never fakes one.

Budget (2 CPU cores): --quick took 107 s here (load average ~5); the default run adds the
slow sections and the 16K interleaved prefill on Gemma-3-270M (16K tokens x 2 runners), which
at the idle-machine speeds in DESIGN.md should stay under 10 min. On a machine shared with
other work every figure is noisy: quote the ratios, since both runners are interleaved within
one run. When the machine is oversubscribed, use --threads 1: with 2 OpenMP threads each
llama_decode waits at ~515 barriers for a descheduled thread (decode fell to 0.3 tok/s at load
average 12 here), which swamps the difference being measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from localctx.bench import raw
from localctx.bench.settings import bench_settings
from localctx.bench.texts import default_prose
from localctx.engine import load_engine
from localctx.errors import BadInput
from localctx.models.catalogue import Catalogue, resolve_model
from localctx.models.ggufmeta import read_gguf

Progress = Callable[[str], None]
HEADLINE_CTX = 4096  # prefill_ratio, decode_ratio and warm_speedup are read at this context
DEFAULT_MODEL = "smollm2-135m"
LONG_MODEL = "gemma3-270m"  # 32K-trained: the only embedded model that can run 16K


@dataclass(frozen=True)
class SpeedRun:
    """One model at one context size in the side-by-side comparison."""

    model: str  # catalogue name or path, as the user gave it
    n_ctx: int
    decode_tokens: int
    warm_reps: int = 0  # > 0: also measure snapshot restore of this prompt
    prefill_reps: int = 1  # a one-chunk prompt gives one pair per rep


def plan_speed_runs(*, quick: bool, model: str | None, trained: dict[str, int]) -> list[SpeedRun]:
    """The context sizes to compare. `trained` maps model -> trained context (installed only).

    512 and 4K on the chosen model (SmolLM2 by default); 16K only on a model trained for it
    (Gemma-3-270M by default: SmolLM2 is 8K-trained, running it at 16K would measure RoPE
    scaling, not the engine). --quick: 512 and 4K.
    """
    main = model or DEFAULT_MODEL
    if main not in trained:
        raise BadInput(f"model {main} is not installed: localctx models pull {main}")
    runs = [
        SpeedRun(main, 512, 32, prefill_reps=3),
        SpeedRun(main, HEADLINE_CTX, 32, warm_reps=5),
    ]
    runs = [r for r in runs if r.n_ctx <= trained[main]]
    if not runs:
        raise BadInput(f"model {main} is trained for {trained[main]} tokens, below 512")
    if not quick:
        long_model = main if trained[main] >= 16384 else LONG_MODEL
        if trained.get(long_model, 0) >= 16384:
            runs.append(SpeedRun(long_model, 16384, 16))
    return runs


def default_text_path(repo_root: Path) -> Path | None:
    """The prose shipped in the repository (localctx.bench.texts); `repo_root` is unused."""
    return default_prose()


def run_suite(
    *,
    quick: bool,
    model: str | None,
    text_path: Path,
    threads: int | None = None,
    repo_root: Path | None = None,
    progress: Progress | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run everything and return the JSON object (charts and the report are written by report).

    `on_checkpoint` gets the result so far after each part, so a run cut short keeps its figures.
    """
    say = progress or (lambda _msg: None)
    checkpoint = on_checkpoint or (lambda _result: None)
    text = _read_text(text_path)
    started = time.perf_counter()
    trained = _installed_models(model)
    runs = plan_speed_runs(quick=quick, model=model, trained=trained)
    result: dict[str, Any] = {
        "quick": quick,
        "text": str(text_path),
        "machine": machine_facts(),
        "speed": [],
        "sections": {},
    }
    rss = PeakRss()
    # The long (16K) runs go last: the headline, memory and sections are on disk before them.
    for run in [r for r in runs if r.n_ctx <= HEADLINE_CTX]:
        _speed_run(run, text, threads, rss, result, say)
        checkpoint(result)
    head = next(e for e in result["speed"] if e["n_ctx"] == min(HEADLINE_CTX, runs[-1].n_ctx))
    result["prefill_ratio"] = head["prefill_ratio"]
    result["decode_ratio"] = head["decode_ratio"]
    result["warm_speedup"] = round(result.get("warm", {}).get("warm_speedup", 0.0), 1)
    result["backend"] = _backend(runs[0], threads)

    main_model = runs[0].model
    say("KV memory vs context per cache type (llama.cpp's own allocation report)")
    rss.reset()
    result["memory"] = kv_memory(main_model, trained[main_model], quick=quick, threads=threads)
    result["memory"]["peak_rss_bytes"] = rss.peak()
    checkpoint(result)
    root = repo_root or Path.cwd()
    args = SectionArgs(resolve_model(main_model), text_path, text, quick, threads, root, say)
    for section in SECTIONS:
        say(section.title)
        rss.reset()
        outcome = run_section(section, args)
        outcome["peak_rss_bytes"] = rss.peak() if outcome.get("available") else 0
        result["sections"][section.key] = outcome
        checkpoint(result)
    for run in [r for r in runs if r.n_ctx > HEADLINE_CTX]:
        _speed_run(run, text, threads, rss, result, say)
    result["peak_rss_bytes"] = rss.overall()
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_average_end"] = _loadavg()
    return result


def _speed_run(
    run: SpeedRun,
    text: str,
    threads: int | None,
    rss: PeakRss,
    result: dict[str, Any],
    say: Progress,
) -> None:
    settings = bench_settings(
        model_path=resolve_model(run.model), n_ctx=run.n_ctx, n_threads=threads
    )
    rss.reset()
    point = raw.compare(
        settings,
        text,
        decode_tokens=run.decode_tokens,
        prefill_reps=run.prefill_reps,
        warm_reps=run.warm_reps,
        progress=say,
    )
    entry = point.to_json() | {"model": run.model, "peak_rss_bytes": rss.peak()}
    if run.warm_reps:
        result["warm"] = entry.pop("warm")
    result["speed"].append(entry)


@dataclass(frozen=True)
class SectionArgs:
    """What every section may use: the suite's model, text and mode."""

    model_path: Path
    text_path: Path
    text: str
    quick: bool
    threads: int | None
    repo_root: Path
    say: Progress


def _eviction(a: SectionArgs) -> dict[str, Any]:
    from localctx.bench.kv import run_kv

    return run_kv(a.model_path, a.text, types=("f16", "q8_0"), tokens=1000, n_threads=a.threads)


def _perplexity(a: SectionArgs) -> dict[str, Any]:
    """Perplexity over 1,536 tokens: the full cache, then windows 256/512/1024, 4 sinks vs 0."""
    from localctx.bench.ppl import run_ppl

    tokens = 1536
    full = run_ppl(a.model_path, a.text, tokens=tokens, window=tokens, sinks=0, full=True,
                   n_threads=a.threads)  # fmt: skip
    rows = [full.to_json()]
    for window in (256, 512, 1024):
        for sinks in (4, 0):
            a.say(f"perplexity: window {window}, {sinks} sinks")
            run = run_ppl(a.model_path, a.text, tokens=tokens, window=window, sinks=sinks,
                          n_threads=a.threads)  # fmt: skip
            rows.append(run.to_json())
    return {"tokens": tokens, "full_ppl": round(full.ppl, 3), "rows": rows}


def _planner(a: SectionArgs) -> dict[str, Any]:
    from localctx.bench.planner import planner_accuracy

    return planner_accuracy(quick=True, threads=a.threads, progress=a.say)


def _ingest(a: SectionArgs) -> dict[str, Any]:
    """files/s of a first ingest of this checkout (offline; `bench ingest` has the QA set)."""
    from localctx.bench.ingest import ingest_benchmark

    return {"subject": "this localctx checkout"} | dict(ingest_benchmark(a.repo_root))


def _digest(a: SectionArgs) -> dict[str, Any]:
    """This checkout's repository map: prefilled vs restored from its KV snapshot."""
    from localctx.bench.ingest import digest_figure

    return digest_figure(a.repo_root, a.model_path, a.threads)


def _gauge(a: SectionArgs) -> dict[str, Any]:
    from localctx.bench.gauge import gauge_overhead

    return gauge_overhead(a.model_path, a.text_path, quick=a.quick, threads=a.threads)


def _needle(a: SectionArgs) -> dict[str, Any]:
    """Short mode: 3 facts in a 2,048-token history through a 512-token window, no summaries."""
    from localctx.bench.needle import run_needle, to_json

    run = run_needle(a.model_path, history=2048, window=512, n_facts=3, text=a.text,
                     summaries=0, threads=a.threads)  # fmt: skip
    return to_json(run)


def _product(a: SectionArgs) -> dict[str, Any]:
    """The path users run (Session + window + gauge) vs raw llama-cpp-python: 4K on the main
    model, 32K on a 32K-trained chat model (the default Qwen2.5-Coder 0.5B), not in --quick.
    128K: `localctx bench product --ctx 131072` (long: one 128K prefill on 2 cores)."""
    from localctx.bench.product import compare_product

    points = []
    sizes = [(a.model_path, 4096)]
    if not a.quick:
        big = a.model_path if read_gguf(a.model_path).context_length >= 32768 else None
        if big is None:
            entry = Catalogue.load().default
            if entry.installed and (entry.context_length or 0) >= 32768:
                big = entry.path
        if big is not None:
            sizes.append((big, 32768))
    for path, n_ctx in sizes:
        a.say(f"product path: {path.stem} at {n_ctx} cells")
        settings = bench_settings(model_path=path, n_ctx=n_ctx, n_threads=a.threads)
        points.append(compare_product(settings, a.text, progress=a.say).to_json())
    return {"points": points}


def _retrieval(a: SectionArgs) -> dict[str, Any]:
    """Span recall of repository search on the held-out QA set (httpx), lexical and fused."""
    from localctx.bench.qa import HELD_OUT, QA_DIR
    from localctx.bench.retrieval import run_retrieval

    return run_retrieval(QA_DIR / HELD_OUT, threads=a.threads)


def _qa(a: SectionArgs) -> dict[str, Any]:
    """Answers end to end: the first 6 questions of the held-out set on the default model."""
    from localctx.bench.qa import HELD_OUT, QA_DIR, run_qa

    run = run_qa(QA_DIR / HELD_OUT, limit=6, max_tokens=256, threads=a.threads)
    return {"model": run.model, "totals": run.totals()}


@dataclass(frozen=True)
class Section:
    """A benchmark another area owns; `module` is checked before `run` is called."""

    key: str
    title: str
    module: str
    run: Callable[[SectionArgs], dict[str, Any]]
    in_quick: bool = False  # --quick keeps its 2-minute budget by skipping the slow ones


SECTIONS = (  # cheapest first, so a run cut short keeps the most
    Section("gauge", "gauge overhead", "localctx.bench.gauge", _gauge, in_quick=True),
    Section("ingest", "ingest files/s", "localctx.bench.ingest", _ingest),
    Section("planner", "planner accuracy", "localctx.bench.planner", _planner),
    Section("digest", "repo digest: prefill vs restore", "localctx.bench.ingest", _digest),
    Section("eviction", "eviction vs re-prefill (f16, q8_0)", "localctx.bench.kv", _eviction),
    Section("needle", "needle recall (short)", "localctx.bench.needle", _needle),
    Section("perplexity", "perplexity vs window, sinks vs none", "localctx.bench.ppl", _perplexity),
    Section(
        "product",
        "the product path vs raw llama-cpp-python",
        "localctx.bench.product",
        _product,
        in_quick=True,
    ),
    Section(
        "retrieval", "repository search (held-out set)", "localctx.bench.retrieval", _retrieval
    ),
    Section("qa", "answers end to end (held-out set, short)", "localctx.bench.qa", _qa),
)


def run_section(section: Section, args: SectionArgs) -> dict[str, Any]:
    """Run one section; never raise. A missing module is "not available" (that area has not
    landed); a failure is reported with its one-line reason so the rest of the suite runs."""
    if args.quick and not section.in_quick:
        return {"available": False, "note": "skipped in --quick (run the default suite)"}
    if importlib.util.find_spec(section.module) is None:
        return {"available": False, "note": f"not available: {section.module} is not built"}
    start = time.perf_counter()
    try:
        value = section.run(args)
    except Exception as exc:  # a broken section must not sink the suite
        return {"available": False, "note": f"failed: {type(exc).__name__}: {exc}"}
    return {"available": True, "seconds": round(time.perf_counter() - start, 1)} | as_json(value)


def as_json(value: Any) -> dict[str, Any]:
    """A section's result as a JSON-ready dict, whatever shape it came in."""
    if hasattr(value, "to_json"):
        value = value.to_json()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return value if isinstance(value, dict) else {"result": value}


def kv_memory(model: str, trained: int, *, quick: bool, threads: int | None) -> dict[str, Any]:
    """KV bytes llama.cpp allocated at several context sizes for f16, q8_0 and q4_0.

    Creating a context allocates without touching most pages (~0.3 s each), so this is cheap;
    the figures are llama.cpp's own report, not a prediction.
    """
    sizes = [s for s in (512, 2048, 4096, 8192, 16384, 32768) if s <= trained]
    if quick:
        sizes = [s for s in sizes if s <= 4096]
    path = resolve_model(model)
    rows = []
    for kv in ("f16", "q8_0", "q4_0"):
        for n_ctx in sizes:
            settings = bench_settings(
                model_path=path, n_ctx=n_ctx, type_k=kv, type_v=kv, n_threads=threads
            )
            with load_engine(settings) as engine:
                alloc = engine.kv_allocation()
            rows.append({"kv": kv, "ctx": n_ctx, "kv_bytes": alloc.total_bytes})
    return {"model": model, "rows": rows}


def machine_facts() -> dict[str, Any]:
    import psutil

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": _loadavg(),
        "shared_note": "figures measured on a machine shared with other work: quote the ratios",
    }


class PeakRss:
    """Peak resident memory per section: Linux lets a process reset its high-water mark."""

    def __init__(self) -> None:
        self._overall = 0

    def reset(self) -> None:
        self._overall = max(self._overall, self.peak())
        # 5 = reset VmHWM (Linux >= 4.0); elsewhere each section reports the peak so far.
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def overall(self) -> int:
        return max(self._overall, self.peak())


def _backend(run: SpeedRun, threads: int | None) -> dict[str, Any]:
    settings = bench_settings(model_path=resolve_model(run.model), n_ctx=512, n_threads=threads)
    with load_engine(replace(settings, flash_attn=True)) as engine:
        info = engine.backend_info()
    info["n_threads"] = threads or os.cpu_count()
    return info


def _installed_models(model: str | None) -> dict[str, int]:
    """Trained context of each usable model: installed catalogue entries and a given path."""
    out: dict[str, int] = {}
    for name, entry in Catalogue.load().entries.items():
        if entry.installed:
            out[name] = entry.context_length or read_gguf(entry.path).context_length
    if model and model not in out:
        out[model] = read_gguf(resolve_model(model)).context_length or 4096
    return out


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"cannot read the benchmark text {path}: {exc.strerror}") from exc
    if len(text) < 20_000:
        raise BadInput(f"the benchmark text {path} is too short (needs ~20 KB of prose)")
    return text


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
