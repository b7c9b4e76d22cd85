#!/usr/bin/env bash
# Builds the image labelled with pyproject.toml's version and this commit (OCI labels), tagged
# payment-window:<version>. Extra arguments go to `docker build` (e.g. --push, -t registry/...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
exec docker build --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -t "payment-window:$version" "$@" .
