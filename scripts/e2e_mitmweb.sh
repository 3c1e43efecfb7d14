#!/usr/bin/env bash
# Opt-in end-to-end look at mitmweb: starts scripts/demo_upstream.py and
# mitmweb with ssemedic in reverse mode on 127.0.0.1, streams healthy and
# broken chats through it (scripts/e2e_mitmweb.py), and saves screenshots,
# taken in headless Chromium (Debian's /usr/bin/chromium, nothing downloaded),
# of the flow list, of the truncated flow's response tab (the "LLM stream"
# view), and of `ssemedic report --html` on the flows mitmweb saved.
#
# Not part of scripts/test: it needs Chromium. Look at the PNGs afterwards.
#
# Usage: scripts/e2e_mitmweb.sh [--out DIR] [--keep]
#   --out DIR  where the PNGs go (default: recordings/screenshots)
#   --keep     keep the temp dir with mitmweb's log, its flows and the page
#
# Environment: SSEMEDIC_CHROMIUM  the browser (default /usr/bin/chromium)

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/recordings/screenshots"
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '11,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -x "${SSEMEDIC_CHROMIUM:-/usr/bin/chromium}" ] || { echo "no Chromium at ${SSEMEDIC_CHROMIUM:-/usr/bin/chromium} (apt-get install chromium)" >&2; exit 2; }
WORK="$(mktemp -d)"
cleanup() { if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
"$ROOT/.venv/bin/python" "$ROOT/scripts/e2e_mitmweb.py" --out "$OUT" --workdir "$WORK"
