#!/usr/bin/env bash
# Opt-in end-to-end check with a real chat frontend: Open WebUI 0.12.4 talks
# to scripts/demo_upstream.py through two mitmdumps running ssemedic in reverse
# mode, one inspect-only and one with ssemedic_repair=true. Open WebUI has one
# connection per scenario through each; scripts/e2e_openwebui.py sends one chat
# through Open WebUI's API path and one through its web-UI path per scenario and
# mitmdump, and checks what users see: the text (or error) Open WebUI relayed
# and saved, and what ssemedic diagnosed. It fails on a wrong saved text, a
# wrong or missing fault kind, or a wrong provider; a table ends the output.
#
# Not part of scripts/test: the first run installs Open WebUI (about 3 GB,
# 4-5 minutes) into a cached venv outside the checkout; later runs reuse it.
#
# Usage: scripts/e2e_openwebui.sh [--scenario NAME]... [--set OPTION=VALUE]... [--keep] [--install-only]
#   --scenario NAME  run only this scripts/demo_upstream.py scenario (repeatable,
#                    or comma-separated). Default, all asserted: healthy,
#                    truncated, error-then-done, invalid-json, letta-send-message,
#                    silence; any other scenario is run and shown, not asserted
#   --set OPTION=VALUE  an extra mitmdump option for both mitmdumps, e.g.
#                    ssemedic_repairs=headers to see a scenario without a repair
#   --keep           keep the temp dir with the logs even when every check passes
#   --install-only   install (or verify) the cached Open WebUI venv and stop
#
# Environment:
#   SSEMEDIC_OPENWEBUI_VENV    the cached venv (default: ${XDG_CACHE_HOME:-~/.cache}/ssemedic/openwebui-venv)
#   SSEMEDIC_OPENWEBUI_PYTHON  the Python 3.11 to create it with (default: python3.11, python3, pyenv)
#   SSEMEDIC_E2E_TIMEOUT       seconds to wait for Open WebUI's /health (default 180)
#   SSEMEDIC_E2E_DELAY         the demo upstream's seconds between writes (default 0.01)

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OWUI_VERSION=0.12.4
# A CPU build of this torch keeps pip from pulling the multi-GB CUDA one.
TORCH_VERSION=2.13.0
OWUI_VENV="${SSEMEDIC_OPENWEBUI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ssemedic/openwebui-venv}"
HEALTH_TIMEOUT="${SSEMEDIC_E2E_TIMEOUT:-180}"
UPSTREAM_DELAY="${SSEMEDIC_E2E_DELAY:-0.01}"
SCENARIO_ARGS=()
MITM_SETS=()
KEEP=0
INSTALL_ONLY=0

usage() { sed -n '14,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --scenario) [ $# -ge 2 ] || { usage >&2; exit 2; }; SCENARIO_ARGS+=(--scenario "$2"); shift 2 ;;
        --scenario=*) SCENARIO_ARGS+=(--scenario "${1#*=}"); shift ;;
        --set) [ $# -ge 2 ] || { usage >&2; exit 2; }; MITM_SETS+=(--set "$2"); shift 2 ;;
        --set=*) MITM_SETS+=(--set "${1#*=}"); shift ;;
        --keep) KEEP=1; shift ;;
        --install-only) INSTALL_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

START=$SECONDS
say() { printf '[e2e +%3ds] %s\n' "$((SECONDS - START))" "$*"; }

# -- Open WebUI venv (cached) -------------------------------------------------

find_python311() {
    local candidate exe
    for candidate in "${SSEMEDIC_OPENWEBUI_PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        # Resolve shims (pyenv) to the real interpreter, and only take 3.11.
        if exe=$("$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 11); print(sys.executable)' \
                2>/dev/null); then
            echo "$exe"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.11*/bin/python3; do
            [ -x "$candidate" ] && { echo "$candidate"; return 0; }
        done
    fi
    echo "Open WebUI $OWUI_VERSION is installed with Python 3.11; none found (set SSEMEDIC_OPENWEBUI_PYTHON)." >&2
    return 1
}

installed_version() {
    "$OWUI_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("open-webui"))' 2>/dev/null || true
}

install_openwebui() {
    if [ -x "$OWUI_VENV/bin/open-webui" ] && [ "$(installed_version)" = "$OWUI_VERSION" ]; then
        say "Open WebUI $OWUI_VERSION already in $OWUI_VENV (cached)"
        return 0
    fi
    local python log constraints step_start
    python="$(find_python311)"
    log="$OWUI_VENV.install.log"
    mkdir -p "$(dirname "$OWUI_VENV")"
    say "installing Open WebUI $OWUI_VERSION into $OWUI_VENV with $("$python" --version) (~3 GB, 4-5 min; log: $log)"
    : >"$log"
    if [ ! -x "$OWUI_VENV/bin/python" ]; then
        "$python" -m venv "$OWUI_VENV" >>"$log" 2>&1
    fi
    constraints="$OWUI_VENV/ssemedic-constraints.txt"
    echo "torch==$TORCH_VERSION" >"$constraints"
    local -a pip=("$OWUI_VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
    step_start=$SECONDS
    say "  pip upgrade"
    "${pip[@]}" --upgrade pip >>"$log" 2>&1 || { tail -n 30 "$log" >&2; return 1; }
    say "  torch==$TORCH_VERSION (CPU build) ..."
    "${pip[@]}" "torch==$TORCH_VERSION" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; return 1; }
    say "  torch: $("$OWUI_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))') ($((SECONDS - step_start)) s)"
    step_start=$SECONDS
    say "  open-webui==$OWUI_VERSION (the long part) ..."
    "${pip[@]}" -c "$constraints" "open-webui==$OWUI_VERSION" >>"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; say "install failed; full log in $log"; return 1; }
    if [ "$(installed_version)" != "$OWUI_VERSION" ]; then
        say "install finished but open-webui $OWUI_VERSION is not importable; see $log"
        return 1
    fi
    say "  open-webui $OWUI_VERSION installed ($((SECONDS - step_start)) s, venv $(du -sh "$OWUI_VENV" | cut -f1))"
}

if [ "$INSTALL_ONLY" = 1 ]; then
    install_openwebui
    exit 0
fi

# -- the project's own venv (mitmdump + ssemedic) -----------------------------

# env.sh creates .venv on first use and is a no-op afterwards; run it as its
# own process so its `cd` and PATH stay out of this script.
bash "$ROOT/scripts/env.sh"
VENV="${SSEMEDIC_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
DRIVER="$ROOT/scripts/e2e_openwebui.py"

# Checks the scenario names before anything starts; the real URLs come later.
"$PY" "$DRIVER" connections --inspect http://127.0.0.1:1 --repair http://127.0.0.1:2 "${SCENARIO_ARGS[@]}" \
    >/dev/null || exit 2

install_openwebui

# -- processes ------------------------------------------------------------------

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ssemedic-e2e.XXXXXX")"
PIDS=()
STATUS=1

# shellcheck disable=SC2317  # only ever called by the EXIT trap
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        # Each service runs in its own process group (setsid): stop the group.
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$STATUS" = 0 ] && [ "$KEEP" = 0 ]; then
        rm -rf "$TMP"
    else
        echo "[e2e] logs kept in $TMP" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts "$@" in its own process group, output to $TMP/<name>.log; sets LAST_PID.
start() {
    local name="$1"; shift
    setsid "$@" >"$TMP/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

UPSTREAM_PORT="$(free_port)"
INSPECT_PORT="$(free_port)"
REPAIR_PORT="$(free_port)"
WEBUI_PORT="$(free_port)"
# The services stop by themselves even if this script is killed with SIGKILL.
LIFETIME=$((HEALTH_TIMEOUT + 600))

say "demo upstream on 127.0.0.1:$UPSTREAM_PORT (a pause of $UPSTREAM_DELAY s between writes)"
start upstream "$PY" "$ROOT/scripts/demo_upstream.py" --host 127.0.0.1 --port "$UPSTREAM_PORT" \
    --delay "$UPSTREAM_DELAY" --max-seconds "$LIFETIME"
UPSTREAM_PID=$LAST_PID

# Starts mitmdump with ssemedic as service NAME on PORT, its JSONL to the file
# JSONL, plus any extra mitmdump arguments, then the --set options given to
# this script; sets LAST_PID.
start_mitmdump() {
    local name="$1" port="$2" jsonl="$3"; shift 3
    start "$name" timeout "$LIFETIME" "$VENV/bin/mitmdump" --mode "reverse:http://127.0.0.1:$UPSTREAM_PORT" \
        --listen-host 127.0.0.1 -p "$port" -s "$ROOT/addons/medic.py" \
        --set "ssemedic_jsonl=$jsonl" --set ssemedic_max_text=0 "$@" "${MITM_SETS[@]}"
}

say "mitmdump + ssemedic, inspect only, on 127.0.0.1:$INSPECT_PORT -> upstream ${MITM_SETS[*]}"
start_mitmdump mitmdump-inspect "$INSPECT_PORT" "$TMP/inspect.jsonl"
INSPECT_PID=$LAST_PID
say "mitmdump + ssemedic, ssemedic_repair=true, on 127.0.0.1:$REPAIR_PORT -> upstream ${MITM_SETS[*]}"
start_mitmdump mitmdump-repair "$REPAIR_PORT" "$TMP/repair.jsonl" --set ssemedic_repair=true
REPAIR_PID=$LAST_PID

# One connection per scenario per mitmdump: the prefix_id (inspect or repair)
# keeps the scenario's one model apart as inspect.<scenario> and
# repair.<scenario>, and Open WebUI strips it again before it calls the upstream.
mapfile -t CONNECTION < <("$PY" "$DRIVER" connections --inspect "http://127.0.0.1:$INSPECT_PORT" \
    --repair "http://127.0.0.1:$REPAIR_PORT" "${SCENARIO_ARGS[@]}")
[ "${#CONNECTION[@]}" = 3 ] || { say "could not build the connection settings"; exit 1; }
CONNECTION_COUNT=$(tr ';' '\n' <<<"${CONNECTION[0]}" | wc -l)
CONNECTION=(OPENAI_API_BASE_URLS="${CONNECTION[0]}" OPENAI_API_KEYS="${CONNECTION[1]}"
            OPENAI_API_CONFIGS="${CONNECTION[2]}")

say "Open WebUI on 127.0.0.1:$WEBUI_PORT with $CONNECTION_COUNT connections (data in $TMP/webui-data)"
mkdir -p "$TMP/webui-data"
SECRET="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
# The headless, offline, auth-less environment from shared/openwebui.md.
start openwebui env \
    DATA_DIR="$TMP/webui-data" WEBUI_AUTH=False WEBUI_SECRET_KEY="$SECRET" \
    ENABLE_OLLAMA_API=False ENABLE_OPENAI_API=True "${CONNECTION[@]}" \
    OFFLINE_MODE=True HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ENABLE_VERSION_UPDATE_CHECK=False \
    ANONYMIZED_TELEMETRY=False SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true \
    RAG_EMBEDDING_ENGINE=openai RAG_EMBEDDING_MODEL_AUTO_UPDATE=False \
    RAG_RERANKING_MODEL_AUTO_UPDATE=False WHISPER_MODEL_AUTO_UPDATE=False \
    BYPASS_EMBEDDING_AND_RETRIEVAL=True ENABLE_WEB_SEARCH=False \
    ENABLE_TITLE_GENERATION=False ENABLE_TAGS_GENERATION=False ENABLE_FOLLOW_UP_GENERATION=False \
    ENABLE_AUTOCOMPLETE_GENERATION=False ENABLE_SEARCH_QUERY_GENERATION=False \
    ENABLE_RETRIEVAL_QUERY_GENERATION=False ENABLE_CODE_INTERPRETER=False ENABLE_IMAGE_GENERATION=False \
    ENABLE_COMPRESSION_MIDDLEWARE=False RESET_CONFIG_ON_START=True \
    NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
    timeout "$LIFETIME" "$OWUI_VENV/bin/open-webui" serve --host 127.0.0.1 --port "$WEBUI_PORT"
WEBUI_PID=$LAST_PID

set +e
"$PY" "$DRIVER" run --webui "http://127.0.0.1:$WEBUI_PORT" "${SCENARIO_ARGS[@]}" \
    --inspect-jsonl "$TMP/inspect.jsonl" --repair-jsonl "$TMP/repair.jsonl" \
    --watch "upstream=$UPSTREAM_PID" --watch "mitmdump-inspect=$INSPECT_PID" \
    --watch "mitmdump-repair=$REPAIR_PID" --watch "openwebui=$WEBUI_PID" \
    --logs "$TMP" --health-timeout "$HEALTH_TIMEOUT"
STATUS=$?
set -e
say "done (exit $STATUS)"
exit "$STATUS"
