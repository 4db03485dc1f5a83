#!/usr/bin/env bash
# .venv-checkers: the independent privacy checkers pycanon and anjana (pins: requirements-checkers.txt).
# They pin numpy 2.0.2 / pandas 2.3.3, which would clash with .venv; called via subprocess.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup_side_venv.sh" "${CHECKERS_VENV:-.venv-checkers}" \
    requirements-checkers.txt "import pycanon.anonymity, anjana.anonymity"
