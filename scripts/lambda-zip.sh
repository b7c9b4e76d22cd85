#!/usr/bin/env bash
# Builds build/expire-due.zip, the Lambda package of the scheduled expiry pass: the service's
# wheel and exactly the locked versions of its dependencies (uv.lock, hashes checked by pip),
# as CPython 3.11 wheels for the python3.11 runtime (Amazon Linux 2: glibc 2.26, x86_64), with the
# secrets wrapper at the zip's root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make --no-print-directory .venv-uv/bin/uv lock-check
uv=.venv-uv/bin/uv
# pip takes a wheel only for a tag listed: every manylinux tag a glibc 2.26 system runs.
platforms=()
for tag in manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_26; do
  platforms+=(--platform "${tag}_x86_64")
done
rm -rf build/lambda build/wheels build/expire-due.zip && mkdir -p build/lambda build/wheels
"$uv" export --locked --no-dev --no-emit-project --no-header --format requirements-txt \
  -o build/wheels/requirements.txt >/dev/null
"$uv" build --wheel --quiet --out-dir build/wheels .
python3 -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
  --target build/lambda --implementation cp --python-version 3.11 \
  "${platforms[@]}" --only-binary=:all: -r build/wheels/requirements.txt
# Our own wheel, just built here: its dependencies are the locked ones installed above.
python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-index \
  --target build/lambda build/wheels/payment_window-*.whl
install -m 0755 infrastructure/lambda/secrets_to_env.py build/lambda/secrets_to_env.py
(cd build/lambda && python3 -m zipfile -c ../expire-due.zip .)
echo "lambda-zip: build/expire-due.zip ($(du -h build/expire-due.zip | cut -f1))"
