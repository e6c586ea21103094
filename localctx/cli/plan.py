"""`localctx plan MODEL`: KV and memory for a model and context, before loading it."""

from __future__ import annotations

from typing import Any

import click

from localctx.cli.common import emit_json, json_option
from localctx.errors import BadKvSetting
from localctx.models.catalogue import resolve_model
from localctx.planner import DEFAULT_CONTEXTS, Plan, plan_model
from localctx.planner.budget import format_bytes, parse_bytes

_DEFAULT_CTX = 131072


@click.command()
@click.argument("model")
@click.option(
    "--ctx", "n_ctx", type=int, default=None, help="Target context in tokens [default: 131072]."
)
@click.option("--kv", default="auto", show_default=True, help="KV type: auto, f16, q8_0 or q4_0.")
@click.option("--budget", default=None, help="Memory to plan for: 8GiB, 8000MB or bytes.")
@click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, metal, vulkan or gpu."
)
@json_option
def plan(
    model: str, n_ctx: int | None, kv: str, budget: str | None, device: str, as_json: bool
) -> None:
    """Plan KV cache and memory for a model and context before loading it."""
    if kv not in ("auto", "f16", "q8_0", "q4_0"):
        raise BadKvSetting(f"unknown KV choice '{kv}' (auto, f16, q8_0, q4_0)")
    budget_bytes = parse_bytes(budget) if budget is not None else None
    ctx = _DEFAULT_CTX if n_ctx is None else n_ctx
    contexts = DEFAULT_CONTEXTS if n_ctx is None else (n_ctx,)
    result = plan_model(
        resolve_model(model), ctx, kv=kv, device=device, budget=budget_bytes, contexts=contexts
    )
    build = _build()
    if as_json:
        emit_json({**result.to_json(), "backend": build})
    else:
        click.echo(render(result))
        offload = "GPU offload supported" if build["gpu_offload"] else "no GPU offload"
        click.echo(f"llama.cpp build: {', '.join(build['compiled'])} ({offload})")
    if result.target.kind != "cpu" and not build["gpu_offload"]:
        click.echo(
            f"localctx: note: this llama.cpp build cannot offload to {result.target.kind}; "
            "install a GPU build of llama-cpp-python to run this plan",
            err=True,
        )


def _build() -> dict[str, Any]:
    """Which llama.cpp backends this install has (read from ggml's registry, no model)."""
    from localctx.engine.devices import backend_name, compiled_backends, gpu_offload_supported

    return {
        "name": backend_name(),
        "compiled": compiled_backends(),
        "gpu_offload": gpu_offload_supported(),
    }


def render(p: Plan) -> str:
    """The human table: one line per KV type x context, then the recommendation."""
    names = [d.name for d in p.devices]
    head = f"{'kv':<5} {'ctx':>7} {'KV/token':>9} {'KV':>11} {'weights':>11} "
    head += f"{'compute':>11} {'total':>11}  " + "  ".join(f"{n:>7}" for n in names)
    lines = [f"{p.model}: target {p.ctx} tokens on {p.target.name}", "", head]
    for r in p.rows:
        fits = "  ".join(f"{'fits' if r.fits[n] else 'no':>7}" for n in names)
        lines.append(
            f"{r.kv:<5} {r.ctx:>7} {r.kv_bytes_per_token:>7} B {format_bytes(r.kv_bytes):>11} "
            f"{format_bytes(r.weights_bytes):>11} {format_bytes(r.compute_bytes):>11} "
            f"{format_bytes(r.total_bytes):>11}  {fits}"
        )
    lines.append("")
    for d in p.devices:
        lines.append(
            f"{d.name}: {format_bytes(d.usable_bytes)} usable of {format_bytes(d.total_bytes)} "
            f"({d.source})"
        )
    lines += [f"{kind}: {why}" for kind, why in p.missing.items()]
    rec = p.recommendation
    window = f" --window {rec.window}" if rec.window else ""
    layers = f" --gpu-layers {rec.n_gpu_layers}" if rec.n_gpu_layers else ""
    lines += [
        "",
        f"recommended: --kv {rec.type_k} --ctx {rec.n_ctx}{window}{layers}"
        f"  ({format_bytes(rec.total_bytes)})",
        f"  {rec.reason}",
    ]
    lines += [f"  note: {n}" for n in rec.notes]
    return "\n".join(lines)
