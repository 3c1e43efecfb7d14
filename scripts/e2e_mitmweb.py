"""See scripts/e2e_mitmweb.sh: mitmweb with ssemedic, healthy and broken chats
through it, and screenshots of mitmweb and of the HTML report in headless
Chromium (Debian's /usr/bin/chromium; nothing is downloaded)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from procs import free_port, stop, wait_for_port  # noqa: E402

import demo_upstream  # noqa: E402

CHROMIUM = os.environ.get("SSEMEDIC_CHROMIUM", "/usr/bin/chromium")
SCENARIOS = ("healthy", "truncated", "error-then-done", "invalid-json", "tool-call")
CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Why does it stream?"}]}


def screenshot(url: str, out: Path, size: str, *, wait_ms: int = 4000) -> None:
    """A PNG of ``url`` after the page had ``wait_ms`` to render (its scripts included)."""
    profile = tempfile.mkdtemp(prefix="ssemedic-chromium-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
            "--hide-scrollbars", f"--screenshot={out}", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not out.exists() or out.stat().st_size < 5000:
        raise RuntimeError(f"chromium made no screenshot of {url}: {done.stderr[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.workdir
    server, _ = demo_upstream.serve("127.0.0.1", 0)
    upstream = server.server_address[1]
    proxy_port, web_port = free_port(), free_port()
    flows = work / "mitmweb.flows"
    log = work / "mitmweb.log"
    mitmweb = str(Path(sys.executable).parent / "mitmweb")
    cmd = [mitmweb, "--no-web-open-browser", "--listen-host", "127.0.0.1", "-p", str(proxy_port),
           "--web-host", "127.0.0.1", "--web-port", str(web_port), "--mode", f"reverse:http://127.0.0.1:{upstream}",
           "-s", str(ROOT / "addons" / "medic.py"), "-w", str(flows),
           # The detail pane beside the flow list in a 1400-pixel window holds about 76 columns.
           "--set", "ssemedic_view_width=72"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "dumb"})
    try:
        wait_for_port(proxy_port, proc)
        wait_for_port(web_port, proc)
        token = None
        for _ in range(100):
            found = re.search(r"token=([0-9a-f]+)", log.read_text(errors="replace"))
            if found:
                token = found.group(1)
                break
            time.sleep(0.1)
        if token is None:
            raise RuntimeError(f"mitmweb printed no token; see {log}")
        with httpx.Client(timeout=30) as http:
            for scenario in SCENARIOS:
                got = http.post(f"http://127.0.0.1:{proxy_port}/s/{scenario}/v1/chat/completions?delay=0.005",
                                json=CHAT)
                print(f"{scenario}: HTTP {got.status_code}, {len(got.content):,} bytes")
            web = f"http://127.0.0.1:{web_port}"
            listed = http.get(f"{web}/flows", params={"token": token}).json()
        print(f"mitmweb lists {len(listed)} flows")
        broken = next(f for f in listed if "/s/truncated/" in f["request"]["path"])
        list_png, view_png = args.out / "mitmweb-flow-list.png", args.out / "mitmweb-llm-stream.png"
        screenshot(f"{web}/?token={token}#/flows", list_png, "1400,700")
        screenshot(f"{web}/?token={token}#/flows/{broken['id']}/response", view_png, "1400,1600")
    finally:
        stop(proc)
        server.shutdown()
        server.server_close()
    page = work / "report.html"
    # Run in the work dir, so the page names the file, not where it is.
    done = subprocess.run([sys.executable, "-m", "ssemedic", "report", "--html", page.name, flows.name],
                          cwd=work, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "addons")})
    if done.returncode not in (0, 1):
        raise RuntimeError(f"report --html failed: {done.stderr}")
    report_png = args.out / "report-html.png"
    screenshot(page.as_uri(), report_png, "1280,1800", wait_ms=1000)
    for png in (list_png, view_png, report_png):
        print(f"saved {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png} ({png.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
