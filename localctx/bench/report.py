"""The `bench all` report: Markdown for people, PNG charts when matplotlib is installed.

What it owns: turning the suite's JSON object into files in --out. The Markdown is built by
pure functions of that object (tested without running a benchmark); charts need matplotlib,
the optional `bench` extra (`pip install 'localctx[bench]'`), imported only here and only when
drawing — without it the report says so and lists no charts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write bench.json, report.md and any charts; returns {"json", "report", "charts", ...}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    charts, chart_note = draw_charts(result, out_dir)
    result["charts"] = [str(p) for p in charts]
    if chart_note:
        result["charts_note"] = chart_note
    json_path = out_dir / "bench.json"
    report_path = out_dir / "report.md"
    result["json_path"] = str(json_path)
    result["report_path"] = str(report_path)
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report_path.write_text(markdown(result), encoding="utf-8")
    return result


def markdown(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    b = result.get("backend", {})
    lines = [
        "# localctx benchmark",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
        f"{_gib(m.get('ram_bytes', 0))} RAM, backend {b.get('backend', '?')}, "
        f"{b.get('n_threads', '?')} threads; load average {m.get('load_average_start')} at start, "
        f"{m.get('load_average_end')} at end. {m.get('shared_note', '')}.",
        f"Run: {'--quick' if result.get('quick') else 'default'}, {result.get('seconds', '?')} s; "
        f"text {result.get('text', '?')}; peak RSS {_mib(result.get('peak_rss_bytes', 0))}.",
        "",
        "## Headline (at 4K context; ratio = localctx / raw llama-cpp-python)",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| prefill_ratio | {result.get('prefill_ratio', 0):.3f} | ≥ 0.97 |",
        f"| decode_ratio | {result.get('decode_ratio', 0):.3f} | ≥ 0.97 |",
        f"| warm_speedup (cold prefill / snapshot restore) | {result.get('warm_speedup', 0):,.0f}x "
        "| ≥ 100x |",
        "",
        *speed_table(result.get("speed", [])),
        *warm_table(result.get("warm", {})),
        *memory_table(result.get("memory", {})),
        *section_lines(result.get("sections", {})),
        *chart_lines(result),
    ]
    return "\n".join(lines) + "\n"


def speed_table(speed: list[dict[str, Any]]) -> list[str]:
    if not speed:
        return []
    out = [
        "## Speed, side by side (interleaved; tok/s)",
        "",
        "| model | ctx | KV | prompt | prefill localctx | prefill raw | ratio "
        "| decode localctx | decode raw | ratio | same tokens | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in speed:
        out.append(
            f"| {s['model']} | {s['n_ctx']} | {s['type_k']} | {s['prompt_tokens']} "
            f"| {s['localctx_prefill_tps']:.1f} | {s['raw_prefill_tps']:.1f} "
            f"| {s['prefill_ratio']:.3f} | {s['localctx_decode_tps']:.1f} "
            f"| {s['raw_decode_tps']:.1f} | {s['decode_ratio']:.3f} "
            f"| {'yes' if s['outputs_match'] else 'NO'} | {_mib(s.get('peak_rss_bytes', 0))} |"
        )
    out += [
        "",
        "Prefill ratio: median over n_batch chunks of (raw time / localctx time), each pair at "
        "the same cache depth, order alternating. Decode ratio: raw / localctx median step "
        "(decode one token + sample the next), the two generators stepped alternately.",
        "",
    ]
    return out


def warm_table(warm: dict[str, Any]) -> list[str]:
    if not warm:
        return []
    cold_ttft = warm["cold_prefill_seconds"]
    return [
        f"## Warm KV snapshot vs cold prefill ({warm['prefix_tokens']}-token prefix)",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| cold prefill | {cold_ttft:.3f} |",
        f"| restore from memory (state_set, {_mib(warm['snapshot_bytes'])}) "
        f"| {warm['restore_seconds']:.4f} |",
        f"| restore from file (state_load) | {warm['load_file_seconds']:.4f} |",
        f"| snapshot (state_get) | {warm['state_get_seconds']:.4f} |",
        f"| save to file (state_save) | {warm['save_file_seconds']:.4f} |",
        f"| time to first token, warm (restore + decode 1 + sample) "
        f"| {warm['ttft_warm_seconds']:.4f} |",
        "",
        f"warm_speedup = {warm['warm_speedup']:,.0f}x from memory, "
        f"{warm['warm_speedup_from_file']:,.0f}x from file.",
        "",
    ]


def memory_table(memory: dict[str, Any]) -> list[str]:
    rows = memory.get("rows", [])
    if not rows:
        return []
    sizes = sorted({r["ctx"] for r in rows})
    kinds = list(dict.fromkeys(r["kv"] for r in rows))
    by = {(r["kv"], r["ctx"]): r["kv_bytes"] for r in rows}
    out = [
        f"## KV memory vs context ({memory.get('model')}, llama.cpp's allocation, MiB)",
        "",
        "| KV | " + " | ".join(str(s) for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for kv in kinds:
        out.append(f"| {kv} | " + " | ".join(_mib(by.get((kv, s), 0)) for s in sizes) + " |")
    return [*out, ""]


def section_lines(sections: dict[str, Any]) -> list[str]:
    if not sections:
        return []
    out = ["## Other areas", ""]
    for key, sec in sections.items():
        if not sec.get("available"):
            out.append(f"- **{key}**: {sec.get('note', 'not available')}")
            continue
        out.append(f"- **{key}** ({sec.get('seconds', '?')} s): {section_summary(key, sec)}")
    return [*out, ""]


HEADLINE_KEYS = {
    "gauge": ("throughput_overhead_pct", "cpu_overhead_pct", "sample_ms_mean", "hz"),
    "ingest": ("files_indexed", "files_per_second", "reingest_speedup", "chunks"),
    "planner": ("kv_max_error_pct", "total_max_error_pct"),
    "needle": ("history_tokens", "window", "facts", "recall_hit_rate", "answer_accuracy",
               "seconds_per_turn"),
}  # fmt: skip


def section_summary(key: str, sec: dict[str, Any]) -> str:
    """The few figures that matter for a section, in words; other keys stay in the JSON."""
    if key == "eviction" and isinstance(sec.get("types"), dict):
        return "; ".join(
            f"{kv}: evict {f.get('evict_ms')} ms vs re-prefill {f.get('reprefill_ms')} ms "
            f"of {sec.get('tokens')} tokens"
            for kv, f in sec["types"].items()
        )
    if key == "perplexity" and isinstance(sec.get("rows"), list):
        parts = [f"full cache {sec.get('full_ppl')}"]
        for label, pts in ppl_series({"perplexity": sec}).items():
            parts.append(f"{label}: " + ", ".join(f"w{w} {p:.2f}" for w, p in pts))
        return f"{sec.get('tokens')} tokens; " + "; ".join(parts)
    names = HEADLINE_KEYS.get(key) or [k for k, v in sec.items() if _is_scalar(v)][:8]
    return ", ".join(f"{k} {sec[k]}" for k in names if k in sec and k != "available")


def chart_lines(result: dict[str, Any]) -> list[str]:
    charts = result.get("charts", [])
    if not charts:
        return ["## Charts", "", result.get("charts_note", "no charts drawn"), ""]
    return ["## Charts", "", *(f"![{Path(c).stem}]({Path(c).name})" for c in charts), ""]


def ppl_series(sections: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Perplexity-vs-window points from the perplexity section, grouped by sinks/no sinks.

    Accepts rows with a window, a sink count and a perplexity, under any of the usual names;
    returns {} when the section has none (the chart is then skipped).
    """
    sec = sections.get("perplexity", {})
    rows = sec.get("rows") or sec.get("runs") or []
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        window = row.get("window")
        ppl = row.get("ppl", row.get("perplexity"))
        sinks = row.get("sinks", row.get("n_sinks", 0))
        if isinstance(window, int) and isinstance(ppl, int | float):
            label = f"{sinks} sinks" if sinks else "no sinks"
            series.setdefault(label, []).append((window, float(ppl)))
    return {k: sorted(v) for k, v in series.items()}


def draw_charts(result: dict[str, Any], out_dir: Path) -> tuple[list[Path], str]:
    """Draw what the data allows; returns (paths, note). No matplotlib: ([], why)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "charts skipped: matplotlib is not installed (pip install 'localctx[bench]')"
    drawn: list[Path] = []
    rows = result.get("memory", {}).get("rows", [])
    if rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        for kv in dict.fromkeys(r["kv"] for r in rows):
            pts = sorted((r["ctx"], r["kv_bytes"] / MIB) for r in rows if r["kv"] == kv)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=kv)
        ax.set(xlabel="context (tokens)", ylabel="KV MiB", title="KV memory vs context")
        ax.legend()
        drawn.append(_save(fig, plt, out_dir / "memory_vs_context.png"))
    series = ppl_series(result.get("sections", {}))
    if series:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, pts in series.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set(xlabel="window (tokens)", ylabel="perplexity", title="Perplexity vs window")
        ax.legend()
        drawn.append(_save(fig, plt, out_dir / "ppl_vs_window.png"))
    warm = result.get("warm", {})
    if warm:
        cold = warm["cold_prefill_seconds"]
        fig, ax = plt.subplots(figsize=(6, 4))
        bars = {"cold prefill": cold, "warm (restore+1 token)": warm["ttft_warm_seconds"]}
        ax.bar(list(bars), list(bars.values()), color=["#c44", "#4a4"])
        ax.set_yscale("log")  # ~1000x apart: a linear axis hides the warm bar
        for i, value in enumerate(bars.values()):
            ax.annotate(f"{value:.3g} s", (i, value), ha="center", va="bottom")
        ax.set(
            ylabel="seconds (log)",
            title=f"Time to first token, {warm['prefix_tokens']}-token prefix",
        )
        drawn.append(_save(fig, plt, out_dir / "ttft_cold_vs_warm.png"))
    notes = [] if series else ["perplexity chart skipped: no perplexity-vs-window rows"]
    return drawn, "; ".join(notes)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float | str | bool)


def _mib(n: int) -> str:
    return f"{n / MIB:,.1f} MiB" if n else "-"


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n else "?"
