"""`localctx bench serve`: many clients against a real `localctx serve`, then its overhead.

Load: the server runs as `python -m localctx serve` in a child process with a throwaway home
(the user's stores are never touched), and `clients` threads each hold one session for `turns`
turns, streaming, resending the whole history every turn as OpenAI clients do. Reported:
requests/s, time to first token (request sent -> first content chunk: queueing, history
matching and prefill included) p50/p99, generated tokens/s over the run, errors (any non-200
or error event; 0 is expected while clients <= --max-queue + 1), the prompt tokens decoded vs
served from the cache per request, and the server's peak RSS (sampled every 0.1 s).

Overhead: one client, the same prompt through `answer_once` (what `localctx ask` runs) in this
process and through one streamed HTTP request, interleaved `rounds` times so a noisy machine
slows both alike; decode tok/s of each (HTTP: as the client sees the tokens arrive, from the
first content chunk to the last) and the median ratio. Two processes on a shared 2-core
machine drift apart by more than 5% between rounds, so `transport_overhead` also compares,
request by request, the server engine's own tok/s with what its client received.

Bounded: at most `clients x turns` requests, and no new request after `timeout` seconds.
Must not: write to the user's stores, or run the model in this process during the load phase.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from localctx import paths
from localctx.errors import BadInput, EngineFailed

TOPICS = (
    "rivers", "bridges", "comets", "glaciers", "lighthouses", "violins", "owls", "deserts",
    "harbors", "volcanoes", "orchards", "canals", "tides", "caves", "kites", "clocks",
)  # fmt: skip
OVERHEAD_PROMPT = "Write a long story about a lighthouse keeper and a storm."
START_TIMEOUT = 180.0


@dataclass
class RequestResult:
    client: int
    turn: int
    status: int
    seconds: float
    ttft: float | None
    completion_tokens: int = 0
    decoded_prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    first_to_last: float = 0.0  # seconds from the first content chunk to the last
    server_decode_tps: float = 0.0  # the engine's own figure, from the final chunk
    error: str = ""


@dataclass
class ServeBench:
    model: str
    clients: int
    turns: int
    max_tokens: int
    max_queue: int
    threads: int | None
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    ttft_p50_seconds: float | None
    ttft_p99_seconds: float | None
    tokens_per_second: float
    decoded_prompt_tokens_mean: float
    cached_prompt_tokens_mean: float
    server_peak_rss_bytes: int
    stopped_by_timeout: bool
    overhead: dict[str, Any] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_serve_bench(
    *,
    model: str | None,
    clients: int,
    turns: int,
    max_tokens: int = 32,
    max_queue: int = 32,
    threads: int | None = None,
    timeout: float = 600.0,
    overhead_rounds: int = 3,
    overhead_tokens: int = 128,
    server_args: tuple[str, ...] = (),
) -> ServeBench:
    if not 1 <= clients <= 256 or not 1 <= turns <= 100:
        raise BadInput("--clients must be 1-256 and --turns 1-100")
    from localctx.bench.suite import machine_facts
    from localctx.runconfig import run_config

    config = run_config(model, threads=threads)  # the server resolves the same settings
    name = _model_name(model)
    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="localctx-bench-serve-") as tmp:
        args = ["--max-queue", str(max_queue), *server_args]
        if model:
            args += ["--model", model]
        if threads:
            args += ["--threads", str(threads)]
        with _server(Path(tmp), args) as (port, proc):
            peak = _PeakRss(proc.pid)
            peak.start()
            started = time.perf_counter()
            deadline = time.monotonic() + timeout
            results: list[RequestResult] = []
            lock = threading.Lock()
            workers = [
                threading.Thread(
                    target=_client,
                    args=(port, i, turns, max_tokens, deadline, results, lock),
                    daemon=True,
                )
                for i in range(clients)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join(timeout + 120)
            wall = time.perf_counter() - started
            peak.stop()
            overhead = (
                _overhead(port, config, overhead_rounds, overhead_tokens, Path(tmp))
                if overhead_rounds
                else {}
            )
            peak_rss = max(peak.value, _rss(proc.pid))
    ok = [r for r in results if r.status == 200 and not r.error]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return ServeBench(
        model=name,
        clients=clients,
        turns=turns,
        max_tokens=max_tokens,
        max_queue=max_queue,
        threads=threads,
        requests=len(results),
        errors=len(results) - len(ok),
        seconds=round(wall, 2),
        requests_per_second=round(len(ok) / wall, 3) if wall else 0.0,
        ttft_p50_seconds=_pct(ttfts, 50),
        ttft_p99_seconds=_pct(ttfts, 99),
        tokens_per_second=round(sum(r.completion_tokens for r in ok) / wall, 2) if wall else 0.0,
        decoded_prompt_tokens_mean=_mean([r.decoded_prompt_tokens for r in ok]),
        cached_prompt_tokens_mean=_mean([r.cached_prompt_tokens for r in ok]),
        server_peak_rss_bytes=peak_rss,
        stopped_by_timeout=len(results) < clients * turns,
        overhead=overhead,
        error_samples=sorted({r.error or f"HTTP {r.status}" for r in results if r not in ok})[:5],
        machine=machine,
    )


# ---------------------------------------------------------------------- the server process
@contextmanager
def _server(home: Path, args: list[str]) -> Any:
    """The server child; stopped on the way out, also when this process gets SIGTERM (turned
    into SystemExit here so the `finally` runs and no server is left behind)."""
    env = os.environ | {"LOCALCTX_HOME": str(home), "LOCALCTX_MODELS": str(paths.models_dir())}
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_term)
    proc = subprocess.Popen(
        [sys.executable, "-m", "localctx", "serve", "--port", "0", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        port = None
        while port is None:
            found = [m for line in lines if (m := re.search(r":(\d+)/v1 ", line))]
            if found:
                port = int(found[0].group(1))
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise EngineFailed(f"the server did not start: {''.join(lines)[-500:]}")
            else:
                time.sleep(0.05)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_term(sig: int, frame: Any) -> None:
    raise SystemExit(128 + sig)


class _PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.value = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.1):
            self.value = max(self.value, _rss(self.pid))

    def stop(self) -> None:
        self._done.set()
        self.join(5)


def _rss(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


# ---------------------------------------------------------------------- clients
def _client(
    port: int,
    index: int,
    turns: int,
    max_tokens: int,
    deadline: float,
    results: list[RequestResult],
    lock: threading.Lock,
) -> None:
    history: list[dict[str, str]] = []
    topic = TOPICS[index % len(TOPICS)]
    for turn in range(turns):
        if time.monotonic() > deadline:
            return
        question = f"Tell me one more fact about {topic} (number {turn + 1})."
        history.append({"role": "user", "content": question})
        body = {
            "messages": history,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        result, text = _stream(port, body, {"X-Localctx-Session": f"bench-{index}"}, index, turn)
        with lock:
            results.append(result)
        if result.status != 200 or result.error:
            history.pop()
            continue
        history.append({"role": "assistant", "content": text})


def _stream(
    port: int, body: dict[str, Any], headers: dict[str, str], client: int, turn: int
) -> tuple[RequestResult, str]:
    """One streamed request; its timings as the client sees them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    sent = time.perf_counter()
    first: float | None = None
    last = sent
    pieces: list[str] = []
    result = RequestResult(client, turn, 0, 0.0, None)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers},
        )
        resp = conn.getresponse()
        result.status = resp.status
        if resp.status != 200:
            resp.read()
            return result, ""
        for event in _events(resp):
            if "error" in event:
                result.error = str(event["error"].get("message", event["error"]))
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    pieces.append(content)
            if event.get("usage"):
                usage = event["usage"]
                result.completion_tokens = int(usage["completion_tokens"])
                cached = int(usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))
                result.cached_prompt_tokens = cached
            if event.get("localctx"):
                result.decoded_prompt_tokens = int(event["localctx"]["decoded_prompt_tokens"])
                result.server_decode_tps = float(event["localctx"]["decode_tps"])
    except (OSError, http.client.HTTPException, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    result.seconds = time.perf_counter() - sent
    result.ttft = first - sent if first is not None else None
    result.first_to_last = (last - first) if first is not None else 0.0
    return result, "".join(pieces)


def _events(resp: http.client.HTTPResponse) -> Any:
    """The JSON objects of a server-sent-events body, up to `data: [DONE]`."""
    while True:
        line = resp.readline()
        if not line:
            return
        text = line.decode("utf-8").strip()
        if not text.startswith("data:"):
            continue
        data = text[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


# ---------------------------------------------------------------------- overhead vs ask
def _overhead(port: int, config: Any, rounds: int, tokens: int, home: Path) -> dict[str, Any]:
    from localctx.engine import Sampling, load_engine
    from localctx.oneshot import answer_once

    sampling = Sampling(max_tokens=tokens, temperature=0.0)
    previous = os.environ.get("LOCALCTX_HOME")
    os.environ["LOCALCTX_HOME"] = str(home / "ask")  # answer_once's ephemeral session
    ask_tps: list[float] = []
    http_tps: list[float] = []
    server_tps: list[float] = []
    ask_ttft: list[float] = []
    http_ttft: list[float] = []
    generated = 0
    try:
        with load_engine(config.settings) as engine:
            for _ in range(rounds):
                done = answer_once(engine, OVERHEAD_PROMPT, sampling, window=config.window)
                ask_tps.append(done.result.decode_tps)
                if done.first_token_seconds is not None:
                    ask_ttft.append(done.first_token_seconds)
                body = {
                    "messages": [{"role": "user", "content": OVERHEAD_PROMPT}],
                    "max_tokens": tokens,
                    "temperature": 0,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                result, _ = _stream(port, body, {}, 0, 0)
                if result.status != 200 or result.error or result.completion_tokens < 2:
                    raise EngineFailed(
                        f"the overhead request failed: {result.error or result.status}"
                    )
                span = result.first_to_last
                http_tps.append((result.completion_tokens - 1) / span if span else 0.0)
                if result.ttft is not None:
                    http_ttft.append(result.ttft)
                generated = result.completion_tokens
                server_tps.append(result.server_decode_tps)
    finally:
        if previous is None:
            os.environ.pop("LOCALCTX_HOME", None)
        else:
            os.environ["LOCALCTX_HOME"] = previous
    ask_med, http_med = statistics.median(ask_tps), statistics.median(http_tps)
    return {
        "rounds": rounds,
        "prompt": OVERHEAD_PROMPT,
        "completion_tokens": generated,
        "ask_decode_tps": round(ask_med, 2),
        "http_decode_tps": round(http_med, 2),
        "server_decode_tps": _med(server_tps),
        "ask_decode_tps_runs": [round(x, 2) for x in ask_tps],
        "http_decode_tps_runs": [round(x, 2) for x in http_tps],
        "overhead": round(1 - http_med / ask_med, 4) if ask_med else None,
        # the same requests, as the server's engine made the tokens vs as the client got them:
        # what HTTP itself costs, whatever the machine's noise between rounds
        "transport_overhead": (
            round(1 - http_med / statistics.median(server_tps), 4) if server_tps else None
        ),
        "ask_first_token_seconds": _med(ask_ttft),
        "http_first_token_seconds": _med(http_ttft),
    }


# ---------------------------------------------------------------------- small helpers
def _model_name(model: str | None) -> str:
    from localctx.models.catalogue import Catalogue

    return model or Catalogue.load().default.name


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _mean(values: list[int]) -> float:
    return round(statistics.fmean(values), 1) if values else 0.0


def _med(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None
