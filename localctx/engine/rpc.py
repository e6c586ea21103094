"""llama.cpp's RPC backend: a model's offloaded layers on other machines (ggml RPC servers).

In the llama.cpp vendored by llama-cpp-python 0.3.36 (commit 0c1e570), RPC servers are no
longer a model parameter and the Python package binds nothing for them: they are ggml backend
devices. llama.cpp's own `--rpc` (common/arg.cpp, add_rpc_devices) does what `register` does
here through ctypes: find the "RPC" backend registry, call its `ggml_backend_rpc_add_server`
proc address once per endpoint (it asks the server for its devices), and `ggml_backend_register`
the result. `llama_model_load_from_file` then uses every registered device, RPC ones first, for
the layers `n_gpu_layers` offloads — so --rpc also offloads all layers unless --gpu-layers says
otherwise (see runconfig).

Connecting to an endpoint that does not answer aborts the whole process inside ggml
(GGML_ABORT "Failed to connect"), so every endpoint is first probed with a plain TCP connect
and a failure becomes one clear error line. A build without RPC (the default CPU wheel) gets
one line saying how to rebuild (-DGGML_RPC=ON, docs/backends.md).

`serve` starts an RPC server in this process on its CPU (what llama.cpp's `rpc-server` binary
does), so a second machine needs only this package: `python -m localctx.engine.rpc HOST:PORT`.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localctx.errors import BadInput, EngineFailed

REBUILD_HINT = 'rebuild llama-cpp-python with CMAKE_ARGS="-DGGML_RPC=ON" (see docs/backends.md)'
_PROBE_TIMEOUT_S = 3.0
_registered: dict[str, list[str]] = {}  # endpoint -> device names; ggml keeps them for good
_lock = threading.Lock()


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoints(spec: str) -> list[Endpoint]:
    """'HOST:PORT[,HOST:PORT]' -> endpoints. Raises BadInput naming the bad part."""
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise BadInput(f"--rpc needs HOST:PORT[,HOST:PORT], got '{spec}'")
    out: list[Endpoint] = []
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadInput(f"--rpc endpoint '{part}' is not HOST:PORT (port 1-65535)")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        out.append(Endpoint(host, int(port)))
    if len(set(out)) != len(out):
        raise BadInput(f"--rpc lists an endpoint twice: '{spec}'")
    if len(out) > 16:  # GGML_RPC_MAX_SERVERS
        raise BadInput(f"--rpc takes at most 16 servers, got {len(out)}")
    return out


def supports_rpc() -> bool:
    import llama_cpp  # here, not at the top: parse_endpoints serves the CLI without llama.cpp

    return bool(llama_cpp.llama_supports_rpc())


def probe(endpoint: Endpoint, timeout: float = _PROBE_TIMEOUT_S) -> None:
    """Raise EngineFailed unless something accepts TCP connections at the endpoint."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EngineFailed(f"RPC server {endpoint} is not reachable: {reason}") from None


def register(spec: str) -> list[str]:
    """Register each endpoint's devices with ggml (once per process); returns device names."""
    endpoints = parse_endpoints(spec)
    if not supports_rpc():
        raise EngineFailed(f"--rpc: this llama-cpp-python build has no RPC backend; {REBUILD_HINT}")
    ggml = _ggml()
    with _lock:
        names: list[str] = []
        for endpoint in endpoints:
            key = str(endpoint)
            if key not in _registered:
                probe(endpoint)
                reg = ggml.add_server(key.encode())
                if not reg:
                    raise EngineFailed(f"RPC server {key} reported no devices")
                ggml.ggml_backend_register(reg)
                _registered[key] = _device_names(key)
            names.extend(_registered[key])
        return names


def serve(endpoint: str, *, threads: int = 0, cache_dir: Path | None = None) -> None:
    """Serve this machine's CPU to RPC clients at HOST:PORT; blocks until the process ends.

    llama.cpp's RPC server trusts its clients completely (it is a remote memory and compute
    API): bind it to 127.0.0.1 or a private network only.
    """
    (parsed,) = parse_endpoints(endpoint)
    if not supports_rpc():
        raise EngineFailed(f"cannot serve RPC: this build has no RPC backend; {REBUILD_HINT}")
    ggml = _ggml()
    start = ggml.proc("ggml_backend_rpc_start_server", _START_SERVER)
    cpu = ggml.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
    devices = (ctypes.c_void_p * 1)(cpu)
    cache = str(cache_dir).encode() if cache_dir else None
    start(str(parsed).encode(), cache, threads or os.cpu_count() or 1, 1, devices)


_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)
_START_SERVER = ctypes.CFUNCTYPE(
    None,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_void_p),
)


class _Ggml:
    """The ggml registry calls RPC needs beyond localctx.engine.devices (llama_cpp binds none)."""

    # Bound in __init__ (ctypes functions; pointers come back as int or None).
    ggml_backend_reg_by_name: Callable[[bytes], int | None]
    ggml_backend_register: Callable[[int], None]
    ggml_backend_dev_by_type: Callable[[int], int | None]
    ggml_backend_reg_get_proc_address: Callable[[int | None, bytes], int | None]

    def __init__(self) -> None:
        import llama_cpp
        from llama_cpp._ctypes_extensions import load_shared_library

        libdir = Path(llama_cpp.__file__).parent / "lib"
        base = load_shared_library("ggml-base", libdir)
        ggml = load_shared_library("ggml", libdir)
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        self._sig(ggml, "ggml_backend_reg_by_name", vp, [cp])
        self._sig(ggml, "ggml_backend_register", None, [vp])
        self._sig(ggml, "ggml_backend_dev_by_type", vp, [ctypes.c_int])
        self._sig(base, "ggml_backend_reg_get_proc_address", vp, [vp, cp])
        self.rpc_reg = self.ggml_backend_reg_by_name(b"RPC")
        if not self.rpc_reg:
            raise EngineFailed(f"llama.cpp reports RPC but has no RPC registry; {REBUILD_HINT}")
        self.add_server = self.proc("ggml_backend_rpc_add_server", _ADD_SERVER)

    def _sig(self, lib: ctypes.CDLL, name: str, restype: object, argtypes: list[object]) -> None:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
        setattr(self, name, fn)

    def proc(self, name: str, prototype: Callable[[int], Callable[..., Any]]) -> Callable[..., Any]:
        """The backend's function `name`, called through `prototype` (a ctypes CFUNCTYPE)."""
        address = self.ggml_backend_reg_get_proc_address(self.rpc_reg, name.encode())
        if not address:
            raise EngineFailed(f"this llama.cpp's RPC backend has no {name}; {REBUILD_HINT}")
        return prototype(address)


_ggml_instance: _Ggml | None = None


def _ggml() -> _Ggml:
    global _ggml_instance
    if _ggml_instance is None:
        _ggml_instance = _Ggml()
    return _ggml_instance


def _device_names(endpoint: str) -> list[str]:
    """The registered devices serving this endpoint (RPC0, RPC1, …: ggml names them in order
    and describes each by its endpoint)."""
    from localctx.engine.devices import backend_devices

    return [d.name for d in backend_devices() if d.description == endpoint]


def main(argv: list[str]) -> int:
    """`python -m localctx.engine.rpc HOST:PORT [THREADS]`: serve this CPU over RPC."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m localctx.engine.rpc HOST:PORT [THREADS]\n")
        return 2
    try:
        serve(argv[0], threads=int(argv[1]) if len(argv) > 1 else 0)
    except (BadInput, EngineFailed) as exc:
        sys.stderr.write(f"localctx: {exc}\n")
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
