"""--rpc: endpoint parsing, the one-line errors, and a real loopback run on two RPC servers.

The loopback test needs a llama-cpp-python built with -DGGML_RPC=ON (the default CPU wheel has
no RPC backend, so there it is skipped with that reason). It starts two RPC servers in child
processes (`python -m localctx.engine.rpc 127.0.0.1:PORT`), loads SmolLM2 with every layer on
them in a third process (ggml's device registration is process-wide, so it must not leak into
other tests), and checks the greedy text equals the local CPU's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localctx.engine.rpc import Endpoint, parse_endpoints, supports_rpc
from localctx.errors import BadInput

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "localctx", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_parse_endpoints() -> None:
    assert parse_endpoints("127.0.0.1:50052, box:1") == [
        Endpoint("127.0.0.1", 50052),
        Endpoint("box", 1),
    ]
    assert str(parse_endpoints("[::1]:7")[0]) == "::1:7"
    for bad in ("", "host", "host:", ":80", "h:0", "h:70000", "h:x", "a:1,", "a:1,a:1"):
        with pytest.raises(BadInput):
            parse_endpoints(bad)
    with pytest.raises(BadInput, match="at most 16"):
        parse_endpoints(",".join(f"h:{p}" for p in range(1, 18)))


def test_bad_rpc_value_is_one_line_exit_9() -> None:
    out = _run("ask", "hi", "--rpc", "nonsense")
    assert out.returncode == 9
    assert out.stderr.strip().count("\n") == 0
    assert "--rpc endpoint 'nonsense' is not HOST:PORT" in out.stderr


@pytest.mark.real
def test_rpc_error_is_one_line_exit_11() -> None:
    """No RPC in the build: say how to rebuild. RPC but nobody listening: say which server."""
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = _run("ask", "hi", "--rpc", f"127.0.0.1:{port}")
    assert out.returncode == 11
    assert out.stderr.strip().count("\n") == 0, out.stderr
    if supports_rpc():
        assert f"RPC server 127.0.0.1:{port} is not reachable" in out.stderr
    else:
        assert "no RPC backend" in out.stderr and "-DGGML_RPC=ON" in out.stderr


_CLIENT = """
import json, sys
from localctx.engine import EngineSettings, Sampling, load_engine, native_log
from localctx.engine import rpc
path, servers = sys.argv[1], sys.argv[2]
def greedy(settings):
    with load_engine(settings) as e:
        marker = native_log.mark()
        e.decode(e.tokenize("The capital of France is", add_special=True))
        text = "".join(ev.text for ev in e.generate(Sampling(max_tokens=8)))
        return text, e.backend_info()["rpc"]
from pathlib import Path
base = EngineSettings(model_path=Path(path), n_ctx=512, flash_attn=True)
local, _ = greedy(base)
marker = native_log.mark()
from dataclasses import replace
remote, has_rpc = greedy(replace(base, n_gpu_layers=-1, rpc_servers=servers))
lines = [l for l in native_log.since(0) if "offloaded" in l or "RPC" in l]
print(json.dumps({"local": local, "remote": remote, "rpc": has_rpc,
                  "devices": rpc.register(servers), "log": lines}))
"""


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the RPC server on {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"the RPC server on {port} did not listen within {deadline_s} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.real
@pytest.mark.skipif(
    not supports_rpc(),
    reason="this llama-cpp-python build has no RPC backend (build it with "
    'CMAKE_ARGS="-DGGML_RPC=ON", see docs/backends.md); the error path is tested above',
)
def test_loopback_two_rpc_servers(smollm_path: Path) -> None:
    ports = [_free_port(), _free_port()]
    env = dict(os.environ)
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "localctx.engine.rpc", f"127.0.0.1:{port}", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        for port in ports
    ]
    try:
        for port, proc in zip(ports, servers, strict=True):
            _wait_port(port, proc)
        spec = ",".join(f"127.0.0.1:{p}" for p in ports)
        out = subprocess.run(
            [sys.executable, "-c", _CLIENT, str(smollm_path), spec],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(timeout=10)
    assert result["rpc"] is True
    assert result["devices"] == ["RPC0", "RPC1"]
    assert any("offloaded 31/31 layers" in line for line in result["log"]), result["log"]
    assert result["remote"] == result["local"]
    assert "Paris" in result["local"]
