#!/usr/bin/env bash
# Prepares what the end-to-end suite needs, idempotently:
#   - kcat (Debian package) on PATH,
#   - a Python venv at $REPO/.venv with scripts/requirements-test.txt installed.
# The venv is (re)installed only when the requirements file or the Python
# interpreter changed (a stamp file inside the venv records both).
#
# Usage: scripts/test-env.sh            (prints nothing but progress on stderr)
# Env:   PYTHON=/path/to/python3.11     interpreter for the venv (default: python3.11, else python3)
#        STRATA_VENV=/path              venv location (default: $REPO/.venv)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STRATA_VENV:-$REPO/.venv}"
REQUIREMENTS="$REPO/scripts/requirements-test.txt"

log() { echo "[test-env] $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# --- kcat ---------------------------------------------------------------------
if ! command -v kcat >/dev/null 2>&1; then
    apt_install kcat
fi
command -v kcat >/dev/null 2>&1 || { log "kcat still missing after install"; exit 1; }

# --- Python interpreter ------------------------------------------------------------
if [ -n "${PYTHON:-}" ]; then
    py="$PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
    py="python3.11"
else
    py="python3"
fi
command -v "$py" >/dev/null 2>&1 || { log "no Python interpreter ($py) found"; exit 1; }
"$py" - <<'PYEOF' || { log "Python >= 3.10 is required"; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PYEOF

# --- venv --------------------------------------------------------------------------
stamp_file="$VENV/.strata-requirements.stamp"
want_stamp="$( { "$py" -c 'import sys; print(sys.version)'; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "existing venv at $VENV is broken; recreating"
    rm -rf "$VENV"
fi

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv at $VENV with $("$py" --version 2>&1)"
    if ! "$py" -m venv "$VENV" >&2; then
        # Debian's python3 ships venv/ensurepip in a separate package.
        rm -rf "$VENV"
        pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt_install "python${pyver}-venv" || apt_install python3-venv
        "$py" -m venv "$VENV" >&2
    fi
elif [ "$("$VENV/bin/python" -c 'import sys; print(sys.version)')" != "$("$py" -c 'import sys; print(sys.version)')" ]; then
    log "venv interpreter differs from $py; recreating"
    rm -rf "$VENV"
    "$py" -m venv "$VENV" >&2
fi

log "installing $REQUIREMENTS"
rm -f "$stamp_file"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS" >&2
echo "$want_stamp" > "$stamp_file"
log "venv ready"
