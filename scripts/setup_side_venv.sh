#!/usr/bin/env bash
# Create (or check) an isolated virtualenv for a tool that must not share .venv (it pins other numpy,
# pandas, protobuf ... than apache-flink): the independent privacy checkers, the reference R-peak
# detectors, Flower. Such tools are called via subprocess. Idempotent: when every pin of the
# requirements file is installed, nothing is installed.
#
# Usage: scripts/setup_side_venv.sh VENV_DIR REQUIREMENTS_FILE "PYTHON IMPORT CHECK"
# Env:   PYTHON (interpreter for the venv, default python3.11 or python3)
set -euo pipefail

if [ "$#" -ne 3 ]; then
    echo "usage: $0 VENV_DIR REQUIREMENTS_FILE 'import check'" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$1"
REQUIREMENTS="$2"
CHECK="$3"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
case "$REQUIREMENTS" in /*) ;; *) REQUIREMENTS="$ROOT/$REQUIREMENTS" ;; esac
NAME="$(basename "$VENV")"
if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

if "$VENV/bin/python" - "$REQUIREMENTS" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
    echo "$NAME: already has the pins of $(basename "$REQUIREMENTS")"
else
    "$VENV/bin/pip" install --disable-pip-version-check -q -r "$REQUIREMENTS"
    echo "$NAME: installed $(basename "$REQUIREMENTS")"
fi

"$VENV/bin/python" -c "$CHECK" && echo "$NAME: ok"
