#!/usr/bin/env bash
# Set up everything (idempotent) and run the checks and the whole test suite:
#   ruff, mypy, the Java helpers' JUnit tests (Maven, offline), pytest (unit, mini-cluster integration
#   and end-to-end tests on the real local stack).
# Usage: bash scripts/test.sh [--slow] [pytest args...]
#   --slow  also run the tests marked slow (long chaos runs)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MARKERS="not slow"
if [ "${1:-}" = "--slow" ]; then MARKERS=""; shift; fi

bash scripts/setup.sh --with-checkers
PY=.venv/bin/python

echo "[test] ruff"
"$PY" -m ruff check .
echo "[test] mypy"
"$PY" -m mypy contract privacy hierarchy connectors devstack operators flink_jobs cardio anomaly federated replay backfill views testkit
"$PY" -m mypy docker/healthcheck.py docker/submit_job.py  # scripts of the images, checked on their own
"$PY" -m mypy --explicit-package-bases benchmarks  # a namespace package run as `python -m benchmarks.X`
echo "[test] mvn test (connectors/java, JUnit on Flink's operator test harnesses)"
MAVEN_OPTS="${MAVEN_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}" \
    mvn -B -o -q -Dstyle.color=never "-Dmaven.repo.local=$ROOT/.cache/m2" -f connectors/java/pom.xml test 2>&1 \
    | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d'  # pipefail: a failing JUnit test fails the run
echo "[test] pytest"
# Missing service binaries must fail the run, never skip it.
export ECG_REQUIRE_STACK=1
# The slowest tests are listed at the end: the default run must stay well under CI's 40 minutes.
exec "$PY" -m pytest -m "$MARKERS" --durations=25 "$@"
