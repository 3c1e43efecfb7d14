"""The folder listing shows the layers, and the layers hold.

``ssemedic.core`` is sans-IO: it must import and parse a stream with
mitmproxy and rich unimportable. The mitmproxy layer (``mitm``) and the
files/CLI layer (``files``) sit on top; the core never imports them, and
``files`` never imports ``mitm``. The inspection worker (``worker``) runs in
a process of its own: it reports as the proxy does (``mitm.output``), but it
never loads mitmproxy, and ``mitm`` only starts it (``python -m``), never
imports it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "addons" / "ssemedic"

# Run in a fresh interpreter: a meta-path finder refuses mitmproxy and rich,
# then every core module is imported and a stream is parsed end to end.
_CORE_ONLY = r"""
import importlib, pkgutil, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mitmproxy", "rich"):
            raise ImportError(f"{name} is not importable in this test")
        return None

sys.meta_path.insert(0, Refuse())
for name in ("mitmproxy", "rich"):
    assert name not in sys.modules
import ssemedic.core
names = [m.name for m in pkgutil.walk_packages(ssemedic.core.__path__, "ssemedic.core.")]
for name in names:
    importlib.import_module(name)
from ssemedic import StreamSession
s = StreamSession(path="/v1/chat/completions", content_type="text/event-stream")
body = 'data: {"choices":[{"delta":{"content":"Привет"}}]}\n\ndata: [DONE]\n\n'.encode()
records = [r for i in range(len(body)) for r in s.feed(body[i:i + 1], float(i))]
records += s.close(float(len(body)))
assert s.message.text == "Привет", s.message.text
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("mitmproxy", "rich"))
assert not loaded, loaded
print(len(names))
"""


def test_core_imports_and_parses_without_mitmproxy_or_rich() -> None:
    done = subprocess.run([sys.executable, "-c", _CORE_ONLY], capture_output=True, text=True, timeout=60,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 15  # every core module was imported, not an empty package


# The worker, in a fresh interpreter with mitmproxy refused: it imports, and
# inspects a stream from its frames to its RESULT, with the log line said.
_WORKER_ONLY = r"""
import io, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "mitmproxy":
            raise ImportError(f"{name} is not importable in this test")
        return None

sys.meta_path.insert(0, Refuse())
import ssemedic.worker.__main__
from ssemedic.core import wire
from ssemedic.worker.inspector import Inspector

out = bytearray()
console = io.StringIO()
inspector = Inspector(out.extend, console=console)
spec = dict(flow_id="f1", label="POST http://up/v1/chat/completions", method="POST",
            path="/v1/chat/completions", request_headers={}, status=200,
            response_headers={"content-type": "text/event-stream"}, started_at=0.0,
            stall_after=30.0, letta_shape="auto")
body = 'data: {"choices":[{"delta":{"content":"Привет"}}]}\n\ndata: [DONE]\n\n'.encode()
frames = wire.value_frame(wire.SETTINGS, 0, {"level": "summary", "max_text": 200, "console": True,
                                             "jsonl": None, "redact": True, "otlp": None})
frames += wire.value_frame(wire.OPEN, 1, spec)
for i in range(0, len(body), 7):
    frames += wire.frame(wire.CHUNK, 1, 0.1 + i / 1000, body[i:i + 7])
frames += wire.value_frame(wire.END, 1, {"error": None, "notes": [], "wire_bytes": len(body),
                                          "wire_chunks": 0, "unparsed": 0}, at=1.0)
reader = wire.Reader()
for i in range(0, len(frames), 5):  # the pipe may cut frames anywhere
    for f in reader.feed(frames[i:i + 5]):
        inspector.handle(f)
inspector.settle()
inspector.close()
results = [f for f in wire.Reader().feed(bytes(out)) if f.kind == wire.RESULT]
assert [f.stream for f in results] == [1], results
assert results[0].value()["provider"] == "openai-chat", results[0].value()
assert "Привет" in console.getvalue(), console.getvalue()
assert not [m for m in sys.modules if m.split(".")[0] == "mitmproxy"]
print("ok")
"""


def test_worker_runs_without_mitmproxy() -> None:
    done = subprocess.run([sys.executable, "-c", _WORKER_ONLY], capture_output=True, text=True, timeout=60,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _imports(path: Path) -> set[str]:
    """The ssemedic subpackages (core, mitm, files) that ``path`` imports from."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(PACKAGE).parts
    here = ["ssemedic", *parts[:-1]]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = [target + [alias.name] for alias in node.names] if not node.module else [target]
            else:
                names = [(node.module or "").split(".")]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        else:
            continue
        for name in names:
            if name[0] == "ssemedic" and len(name) > 1:
                found.add(name[1])
            elif name[0] in ("mitmproxy", "rich"):
                found.add(name[0])
    return found


ALLOWED = {
    "core": {"core"},
    "files": {"core", "files", "mitmproxy", "rich"},
    "mitm": {"core", "files", "mitm", "mitmproxy", "rich"},
    "worker": {"core", "files", "mitm", "worker", "rich"},
}


def test_each_layer_imports_only_the_layers_below() -> None:
    layers = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert layers == sorted(ALLOWED)
    wrong = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            extra = _imports(path) - allowed - {"__version__", "__init__"}
            if extra:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {sorted(extra)}")
    assert not wrong, wrong


def test_only_the_entry_points_sit_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
