"""`localctx plan` and the planner's defaults for chat/ask: the CLI contract and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from localctx.engine import devices as engine_devices
from localctx.errors import BadInput, Exit
from localctx.planner import devices
from localctx.runconfig import engine_settings, run_config
from tests.test_planner import TINY_SWA, build_gguf


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localctx", *args], capture_output=True, text=True, timeout=120
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: Exit, match: str) -> None:
    assert result.returncode == int(code), (result.returncode, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("localctx: ") and match in lines[0], lines
    assert result.stdout == ""


def test_plan_json_has_every_type_at_8k_32k_128k() -> None:
    result = run("plan", "smollm2-135m", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ctx"] == 131072 and data["device"] == "cpu"
    assert [(r["kv"], r["ctx"]) for r in data["rows"]] == [
        (kv, n) for n in (8192, 32768, 131072) for kv in ("f16", "q8_0", "q4_0")
    ]
    f16_8k = data["rows"][0]
    assert f16_8k["kv_bytes"] == 180 * 2**20 and f16_8k["kv_bytes_per_token"] == 23040
    # llama.cpp reports "CPU_Mapped model buffer size = 92.10 MiB" for this file.
    assert round(f16_8k["weights_bytes"] / 2**20, 2) == 92.10 and set(f16_8k["fits"]) == {"cpu"}
    rec = data["recommendation"]
    assert {"type_k", "type_v", "n_ctx", "window", "n_gpu_layers"} <= set(rec)
    assert rec["n_gpu_layers"] == 0 and rec["type_k"] == rec["type_v"]
    assert any("--force" in note for note in rec["notes"])  # 128K is above SmolLM2's 8K


def test_plan_table_with_a_budget_recommends_a_window() -> None:
    result = run("plan", "gemma3-270m", "--ctx", "32768", "--budget", "330MiB", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "q4_0    32768" in out and "f16     32768" in out
    assert "--window" in out and "sink window" in out and "330.00 MiB usable" in out


def test_plan_for_a_hypothetical_gpu_budget() -> None:
    result = run("plan", "smollm2-135m", "--device", "cuda", "--budget", "8GiB", "--json")
    data = json.loads(result.stdout)
    assert data["device"] == "cuda" and "cuda" not in data["missing_devices"]
    assert data["recommendation"]["type_k"] == "q8_0"
    assert data["recommendation"]["n_gpu_layers"] == 31  # 30 layers + the output head
    assert "CPU" in data["backend"]["compiled"]
    if not data["backend"]["gpu_offload"]:  # this machine: say the plan cannot run here
        assert "cannot offload to cuda" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (("--ctx", "0"), Exit.BAD_INPUT, "context size must be positive, got 0"),
        (("--ctx", "-8192"), Exit.BAD_INPUT, "context size must be positive, got -8192"),
        (("--budget", "8 gigs"), Exit.BAD_INPUT, "cannot read the budget '8 gigs'"),
        (("--device", "tpu"), Exit.BAD_INPUT, "unknown device 'tpu'"),
        (("--kv", "q3_k"), Exit.BAD_KV_SETTING, "unknown KV choice 'q3_k'"),
    ],
)
def test_plan_bad_input(args: tuple[str, ...], code: Exit, match: str) -> None:
    one_line_error(run("plan", "smollm2-135m", *args), code, match)


def test_plan_names_a_missing_metadata_key(tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "nokey.gguf", replace(TINY_SWA, drop=("feed_forward_length",)))
    one_line_error(
        run("plan", str(path)),
        Exit.BAD_MODEL_FILE,
        "missing metadata key gemma3.feed_forward_length",
    )


def test_plan_without_an_nvidia_gpu_is_a_clean_error() -> None:
    result = run("plan", "smollm2-135m", "--device", "cuda")
    if result.returncode == 0:
        pytest.skip("this machine has an NVIDIA GPU")
    one_line_error(result, Exit.BAD_INPUT, "no NVIDIA GPU")


# ------------------------------------------------------------------ devices
def fake_nvml(*, fail: str | None = None, gpus: int = 1) -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        if fail:
            raise NVMLError(fail)

    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: gpus  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: b"NVIDIA GeForce RTX 4060 Laptop GPU"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        used=1 * 2**30, total=8 * 2**30
    )
    return mod


@pytest.fixture
def fresh_nvml(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(devices.NvidiaGpus, "_shared", None)

    def install(module: types.ModuleType | None) -> None:
        monkeypatch.setitem(sys.modules, "pynvml", module)  # None: import fails

    return install


def test_no_nvml_package_is_a_reason_not_a_crash(fresh_nvml) -> None:
    fresh_nvml(None)
    budgets, why = devices.nvidia_budgets()
    assert budgets == [] and "nvidia-ml-py is not installed" in why


def test_nvml_without_a_driver_is_a_reason(fresh_nvml) -> None:
    fresh_nvml(fake_nvml(fail="Driver Not Loaded"))
    budgets, why = devices.nvidia_budgets()
    assert budgets == [] and why == "NVML: Driver Not Loaded"


def test_an_nvidia_gpu_gets_a_budget_with_a_margin(fresh_nvml) -> None:
    fresh_nvml(fake_nvml())
    (budget,), why = devices.nvidia_budgets()
    assert why == "" and budget.name == "cuda:0" and budget.total_bytes == 8 * 2**30
    free = 7 * 2**30
    assert budget.free_bytes == free
    assert budget.usable_bytes == free - 512 * 2**20 - 8 * 2**30 // 20
    found, missing = devices.detect_devices()
    assert [d.name for d in found][:2] == ["cpu", "cuda:0"] and "cuda" not in missing


def test_cpu_budget_keeps_a_margin() -> None:
    budget = devices.cpu_budget()
    assert 0 < budget.usable_bytes < budget.free_bytes <= budget.total_bytes


def test_llama_cpp_backend_devices() -> None:
    assert "CPU" in engine_devices.compiled_backends()
    found = engine_devices.backend_devices()
    assert any(d.kind == "cpu" and d.total_bytes > 0 for d in found)
    backend = engine_devices.backend_name()
    assert backend in ("cpu", "cuda", "metal", "vulkan")
    if not engine_devices.gpu_offload_supported():
        assert backend == "cpu"  # this machine's build: CPU only


# ------------------------------------------------------------------ chat/ask defaults
@pytest.fixture(autouse=True)
def _plan_for_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults below are the CPU rules; a GPU build would plan for its GPU instead."""
    monkeypatch.setattr("localctx.runconfig._usable_device", lambda: "cpu")


def test_chat_and_ask_default_to_the_recommendation() -> None:
    config = run_config()  # SmolLM2: trained 8K, f16 fits
    assert (config.settings.n_ctx, config.settings.type_k, config.window) == (8192, "f16", None)
    assert "f16" in config.reason
    gemma = run_config("gemma3-270m")  # trained 32K
    assert gemma.settings.n_ctx == 32768 and gemma.settings.n_gpu_layers == 0


def test_flags_override_the_recommendation() -> None:
    assert engine_settings(kv="q8_0").type_k == "q8_0"
    assert engine_settings(n_ctx=2048).n_ctx == 2048
    windowed = run_config(window=1024)
    assert (windowed.settings.n_ctx, windowed.window) == (1024, 1024)
    given = run_config(kv="q4_0", n_ctx=4096, gpu_layers=0)
    assert (given.settings.type_k, given.settings.n_ctx, given.reason) == ("q4_0", 4096, "as given")
    with pytest.raises(BadInput):
        run_config(n_ctx=0)


def test_a_small_machine_gets_a_quantized_cache_or_a_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def small(usable: int):
        return lambda: devices.DeviceBudget("cpu", "cpu", usable, usable, usable, False, "test")

    monkeypatch.setattr(devices, "cpu_budget", small(250 * 2**20))
    config = run_config()  # f16 at 8K needs 309 MiB; q8_0 225 MiB
    assert (config.settings.type_k, config.settings.n_ctx, config.window) == ("q8_0", 8192, None)
    monkeypatch.setattr(devices, "cpu_budget", small(150 * 2**20))
    config = run_config()
    assert config.settings.type_k == "q4_0" and config.window == config.settings.n_ctx < 8192


@pytest.mark.real
def test_ask_json_carries_the_final_gauge_reading() -> None:
    result = run("ask", "Name one colour.", "--json", "--max-tokens", "6", "--threads", "1")
    assert result.returncode == 0, result.stderr
    gauge = json.loads(result.stdout)["gauge"]
    assert gauge["kv"]["cells_used"] > 0 and gauge["kv"]["n_ctx"] == 8192
    assert gauge["rss_bytes"] > 0 and gauge["backend"] == "cpu" and gauge["decode_tps"] > 0


@pytest.mark.real
def test_ask_runs_the_recommended_window_when_memory_is_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from localctx.cli import main

    usable = 150 * 2**20  # SmolLM2 needs 180 MiB for q4_0 at 8K: the planner picks a window
    monkeypatch.setattr(
        devices,
        "cpu_budget",
        lambda: devices.DeviceBudget("cpu", "cpu", usable, usable, usable, False, "test"),
    )
    expected = run_config()
    assert expected.window is not None and expected.settings.type_k == "q4_0"
    result = CliRunner().invoke(
        main, ["ask", "Name one colour.", "--json", "--max-tokens", "4", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["type_k"] == "q4_0" and data["n_ctx"] == expected.settings.n_ctx
    assert data["gauge"]["kv"]["window"] == expected.window
