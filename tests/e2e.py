"""Running real processes for end-to-end tests: the demo upstream in a thread
and mitmdump with ssemedic as a subprocess, all on 127.0.0.1, all bounded."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
MEDIC = ROOT / "addons" / "medic.py"
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))

sys.path.insert(0, str(ROOT / "scripts"))
from procs import free_port, stop, wait_for_port  # noqa: E402  (scripts/procs.py, shared with the scripts)

__all__ = ["ROOT", "Mitmdump", "free_port", "load_script", "mitmdump", "run_mitmdump", "stop", "wait_for_port"]


def load_script(name: str) -> ModuleType:
    """Import scripts/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Mitmdump:
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def mitmdump(upstream_port: int | None, workdir: Path, *extra: str, name: str = "mitmdump") -> Iterator[Mitmdump]:
    """mitmdump with ssemedic; reverse mode in front of ``upstream_port``, or
    offline (``-n``) when it is None. Stopped with SIGINT (so ``-w`` files are
    complete) and killed if it does not stop within 15 s."""
    port = free_port()
    log = workdir / f"{name}.log"
    args: list[str] = [MITMDUMP, "--listen-host", "127.0.0.1", "-p", str(port), "-s", str(MEDIC)]
    if upstream_port is not None:
        args += ["--mode", f"reverse:http://127.0.0.1:{upstream_port}"]
    args += list(extra)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "dumb"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        if upstream_port is not None:
            wait_for_port(port, proc)
        yield Mitmdump(port, log, proc)
    finally:
        stop(proc)


def run_mitmdump(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """A mitmdump run that ends by itself (e.g. ``-nr FILE``)."""
    env = {**os.environ, "TERM": "dumb"}
    return subprocess.run(
        [MITMDUMP, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
