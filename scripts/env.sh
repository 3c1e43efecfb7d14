# Sourced by scripts/demo, scripts/test and .ci/run: finds a Python >= 3.12,
# creates .venv in the checkout and installs ssemedic with its test extra.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SSEMEDIC_VENV:-$ROOT/.venv}"

find_python() {
    local candidate version
    for candidate in "${SSEMEDIC_PYTHON:-}" python3.13 python3.12 python3; do
        [ -n "$candidate" ] || continue
        if version=$("$candidate" -c 'import sys; print(sys.version_info >= (3, 12))' 2>/dev/null) \
            && [ "$version" = "True" ]; then
            command -v "$candidate"; return 0
        fi
    done
    # pyenv installs versions that its shims hide unless selected.
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.13*/bin/python3 "$(pyenv root)"/versions/3.12*/bin/python3; do
            [ -x "$candidate" ] && { echo "$candidate"; return 0; }
        done
    fi
    echo "ssemedic needs Python >= 3.12 (mitmproxy 12 requires it); set SSEMEDIC_PYTHON to one." >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PYTHON="$(find_python)"
    echo "[setup] creating $VENV with $("$PYTHON" --version)" >&2
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.ssemedic-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    echo "[setup] installing ssemedic and its test tools into $VENV" >&2
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
            && "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[test]"; } \
            >"$VENV/install.log" 2>&1; then
        tail -n 40 "$VENV/install.log" >&2
        echo "[setup] install failed; full log in $VENV/install.log" >&2
        exit 1
    fi
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
