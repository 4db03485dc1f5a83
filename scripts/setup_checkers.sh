#!/usr/bin/env bash
# Create .venv-checkers: an isolated virtualenv for the independent privacy checkers
# (pycanon, anjana). They pin numpy==2.0.2 / pandas==2.3.3, which would clash with the
# project's .venv (numpy 2.1), so they live apart and are called via subprocess.
# Idempotent: re-running with the pins already satisfied does nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKERS_VENV:-$ROOT/.venv-checkers}"
PYTHON="${PYTHON:-python3}"
# Verified together on Python 3.11 (anjana 1.2.3 itself pins pycanon 1.3.5, numpy 2.0.2,
# pandas 2.3.3, beartype 0.22.2).
PINS=("pycanon==1.3.5" "anjana==1.2.3")

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

if "$VENV/bin/python" - "${PINS[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
    echo "setup_checkers: $VENV already has ${PINS[*]}"
else
    "$VENV/bin/pip" install --disable-pip-version-check -q "${PINS[@]}"
    echo "setup_checkers: installed ${PINS[*]} into $VENV"
fi

"$VENV/bin/python" -c "import pycanon.anonymity, anjana.anonymity; print('setup_checkers: ok')"
