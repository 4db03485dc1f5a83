#!/usr/bin/env bash
# Set up everything (idempotent) and run the main job on the embedded local stack:
#   ECG simulator -> Apache Kafka (one local KRaft node) -> anonymization job (embedded Flink, web UI :8081) -> InfluxDB 1.x.
# Ctrl+C stops everything it started. Options are passed to devstack.run_local (see --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec .venv/bin/python -m devstack.run_local "$@"
