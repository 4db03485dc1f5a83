#!/usr/bin/env bash
# .venv-refs: the reference R-peak detectors neurokit2 and wfdb's XQRS that the beat-detection benchmark
# and tests compare cardio/ against (pins: requirements-refs.txt). Heavy batch detectors that must not
# reach the Flink workers; called via subprocess (cardio/references.py).
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup_side_venv.sh" "${REFS_VENV:-.venv-refs}" \
    requirements-refs.txt "import neurokit2, wfdb.processing"
