#!/usr/bin/env bash
# Set up everything the project needs on Debian bookworm (CI and local), idempotently:
#   - Java 17 (java required; javac installed with apt when missing), Apache Maven (apt when missing)
#   - apt: influxdb (influxd 1.6), influxdb-client (influx CLI), victoria-metrics
#     (services are NOT started: we run them ourselves via devstack/stack.py)
#   - apt: docker-compose (1.29, validates docker-compose.yml) and chromium (web UI test)
#   - .venv (python3.11) with requirements-dev.txt (skipped when the requirements hash matches)
#   - Kafka connector jars from Maven Central in .cache/jars (python -m connectors.jars, SHA-256 verified)
#   - the Apache Kafka broker of the local stack (devstack/kafka/pom.xml -> .cache/kafka/lib)
#   Maven resolves into the project's own local repository .cache/m2 with strict checksums (-C);
#   a second run finds everything there and asks no repository (stamps in .cache/*.sha256).
#   - flink-python jar copied into the venv's pyflink/lib (standalone cluster mode)
#   - the real ECG record (python -m devstack.ecg_data)
#   - the project's Java helpers, built and tested by Maven (connectors/java/pom.xml ->
#     .cache/jars/ecg-flink-anon-connectors.jar; scripts/test.sh runs their JUnit tests offline)
#   - with --with-checkers: scripts/setup_checkers.sh (.venv-checkers), scripts/setup_refs.sh
#     (.venv-refs: reference R-peak detectors for the beat-detection tests and benchmark) and
#     scripts/setup_flower.sh (.venv-flower: Flower's FedAvg for the federated-averaging test)
#
# Usage: scripts/setup.sh [--with-checkers] [--no-apt] [-h|--help]
# Env:   PYTHON (interpreter for the venv, default python3.11 or python3), VENV (default .venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WITH_CHECKERS=0
NO_APT=0
for arg in "$@"; do
    case "$arg" in
        --with-checkers) WITH_CHECKERS=1 ;;
        --no-apt) NO_APT=1 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

VENV="${VENV:-$ROOT/.venv}"
CACHE="$ROOT/.cache"
JARS_DIR="$CACHE/jars"
M2_REPO="$CACHE/m2"
# Maven: the project's own local repository, strict checksums, quiet; a short-lived JVM starts quicker
# with the C1 JIT only.
MVN=(mvn -B -q -C -Dstyle.color=never "-Dmaven.repo.local=$M2_REPO")
export MAVEN_OPTS="${MAVEN_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
# Maven 3.8 prints colour resets even in batch mode: strip them (pipefail keeps mvn's exit status).
mvn_run() { "${MVN[@]}" "$@" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d'; }
DONE=()

log()  { printf '[setup] %s\n' "$*"; }
did()  { DONE+=("$*"); log "$*"; }
die()  { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

sha_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------------------------------------
# apt helpers

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi
APT_UPDATED=0
POLICY_CREATED=0

cleanup() {
    if [ "$POLICY_CREATED" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

apt_install() {
    [ "$NO_APT" -eq 0 ] || die "need apt packages ($*) but --no-apt was given"
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
        die "need apt packages ($*): run as root or install them: apt-get install -y $*"
    fi
    # Keep package maintainer scripts from starting services (no systemd here; on CI machines
    # with systemd, deb-systemd-invoke honours policy-rc.d too).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        POLICY_CREATED=1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    did "apt installed: $*"
}

# pids of processes running the program $1 (matched on the command line: comm is cut to 15 chars)
pids_of() { pgrep -f "^([^ ]*/)?$1( |\$)" 2>/dev/null | tr '\n' ' ' || true; }

# ---------------------------------------------------------------------------------------------
# 1. Java

if ! command -v java >/dev/null 2>&1; then
    die "java not found. Flink 2.0 needs Java 17: apt-get install -y openjdk-17-jre-headless"
fi
JAVA_MAJOR="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}' | cut -d. -f1)"
if [ -z "$JAVA_MAJOR" ] || [ "$JAVA_MAJOR" -lt 11 ]; then
    die "java ${JAVA_MAJOR:-?} is too old; Flink 2.0 needs 11+ (17 recommended): apt-get install -y openjdk-17-jre-headless"
fi
if ! command -v javac >/dev/null 2>&1 || ! command -v jar >/dev/null 2>&1; then
    apt_install openjdk-17-jdk-headless
fi
if ! command -v mvn >/dev/null 2>&1; then
    apt_install maven
fi
log "java $JAVA_MAJOR ok ($(command -v java)), javac ok, $(mvn -v 2>/dev/null | head -1 | sed 's/\x1b\[[0-9;]*m//g')"

# ---------------------------------------------------------------------------------------------
# 2. InfluxDB 1.x + VictoriaMetrics binaries (we start them ourselves, never as services)

if ! command -v influxd >/dev/null 2>&1 || ! command -v influx >/dev/null 2>&1 \
        || ! command -v victoria-metrics >/dev/null 2>&1; then
    before_influxd="$(pids_of influxd)"
    before_vm="$(pids_of victoria-metrics)"
    apt_install influxdb influxdb-client victoria-metrics
    # If a maintainer script still started the services, stop them again through the service
    # manager (only services that were not running before we installed).
    for svc in influxdb victoria-metrics; do
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
    done
    if [ -z "$before_influxd" ] && [ -n "$(pids_of influxd)" ]; then
        $SUDO service influxdb stop >/dev/null 2>&1 || true
    fi
    if [ -z "$before_vm" ] && [ -n "$(pids_of victoria-metrics)" ]; then
        $SUDO service victoria-metrics stop >/dev/null 2>&1 || true
    fi
    [ -n "$before_influxd" ] || [ -z "$(pids_of influxd)" ] \
        || log "WARNING: an influxd service is running (pid $(pids_of influxd)); not ours, left alone"
    [ -n "$before_vm" ] || [ -z "$(pids_of victoria-metrics)" ] \
        || log "WARNING: a victoria-metrics service is running (pid $(pids_of victoria-metrics)); not ours, left alone"
else
    log "influxd, influx, victoria-metrics present"
fi

# ---------------------------------------------------------------------------------------------
# 2b. docker-compose (tests validate docker-compose.yml with `docker-compose config`; no Docker
#     engine needed) and Chromium (the web UI test drives it with playwright)

COMPOSE_TOOLS=()
command -v docker-compose >/dev/null 2>&1 || COMPOSE_TOOLS+=(docker-compose)
[ -x /usr/bin/chromium ] || COMPOSE_TOOLS+=(chromium)
if [ "${#COMPOSE_TOOLS[@]}" -gt 0 ]; then
    apt_install "${COMPOSE_TOOLS[@]}"
else
    log "docker-compose, chromium present"
fi

# ---------------------------------------------------------------------------------------------
# 3. Python venv

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
        || die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); need 3.11 (set PYTHON=/path/to/python3.11)"
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv  # Debian's python3.11 ships venv/ensurepip separately
    fi
    "$PYTHON" -m venv "$VENV"
    did "created venv $VENV ($("$VENV/bin/python" --version))"
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
    || die "$VENV uses $("$PY" --version); need Python 3.11 (delete $VENV and re-run)"

REQ_STAMP="$VENV/.requirements.sha256"
REQ_HASH="$(sha_of requirements.txt requirements-dev.txt)"
if [ "$(cat "$REQ_STAMP" 2>/dev/null || true)" != "$REQ_HASH" ]; then
    log "pip install -r requirements-dev.txt"
    "$PY" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    echo "$REQ_HASH" > "$REQ_STAMP"
    did "python packages installed (requirements-dev.txt)"
else
    log "python packages up to date (stamp $REQ_STAMP)"
fi

PYFLINK_DIR="$("$PY" -c 'import os, pyflink; print(os.path.dirname(os.path.abspath(pyflink.__file__)))')"

# ---------------------------------------------------------------------------------------------
# 4. Kafka connector jars (Maven Central, SHA-256 pinned in connectors/jars.py)

"$PY" -m connectors.jars --cache-dir "$JARS_DIR" --maven-repo "$M2_REPO" | sed 's/^/[setup] /'

# ---------------------------------------------------------------------------------------------
# 4b. Apache Kafka broker of the local stack (devstack/kafka/pom.xml -> .cache/kafka/lib)

KAFKA_LIB="$CACHE/kafka/lib"
KAFKA_STAMP="$CACHE/kafka/lib.sha256"
KAFKA_HASH="$(sha_of devstack/kafka/pom.xml)"
if [ ! -d "$KAFKA_LIB" ] || [ "$(cat "$KAFKA_STAMP" 2>/dev/null || true)" != "$KAFKA_HASH" ]; then
    log "mvn: Apache Kafka broker -> $KAFKA_LIB"
    rm -rf "$KAFKA_LIB" "$KAFKA_STAMP"
    mvn_run -f devstack/kafka/pom.xml dependency:copy-dependencies \
        -DincludeScope=runtime "-DoutputDirectory=$KAFKA_LIB"
    echo "$KAFKA_HASH" > "$KAFKA_STAMP"
    did "fetched Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' devstack/kafka/pom.xml) ($(ls "$KAFKA_LIB" | wc -l) jars) -> $KAFKA_LIB"
else
    log "Apache Kafka broker up to date ($KAFKA_LIB)"
fi

# ---------------------------------------------------------------------------------------------
# 5. flink-python jar into pyflink/lib (standalone cluster: ExternalPythonProcessOperator)

shopt -s nullglob
for src in "$PYFLINK_DIR"/opt/flink-python-*.jar; do
    dst="$PYFLINK_DIR/lib/$(basename "$src")"
    if ! cmp -s "$src" "$dst"; then
        cp "$src" "$dst"
        did "copied $(basename "$src") into pyflink/lib"
    fi
done
shopt -u nullglob

# ---------------------------------------------------------------------------------------------
# 6. Real ECG record

"$PY" -m devstack.ecg_data | sed 's/^/[setup] /'

# ---------------------------------------------------------------------------------------------
# 7. Project Java helpers (Maven: connectors/java/pom.xml) -> .cache/jars/ecg-flink-anon-connectors.jar

PROJECT_JAR="$JARS_DIR/ecg-flink-anon-connectors.jar"
JAVA_STAMP="$CACHE/java-build.sha256"
mapfile -t JAVA_FILES < <(find connectors/java -type f \( -name '*.java' -o -name pom.xml \) | LC_ALL=C sort)
JAVA_HASH="$( { sha_of "${JAVA_FILES[@]}"; java -version 2>&1; } | sha256sum | cut -d' ' -f1)"
if [ ! -f "$PROJECT_JAR" ] || [ "$(cat "$JAVA_STAMP" 2>/dev/null || true)" != "$JAVA_HASH" ]; then
    log "mvn package connectors/java (compile, JUnit tests, jar)"
    # Resolves the test dependencies too, so that scripts/test.sh runs the tests offline. A failing
    # test is reported here but does not stop the setup: scripts/test.sh fails on it.
    mvn_run -f connectors/java/pom.xml package -Dmaven.test.failure.ignore=true \
        || die "mvn package connectors/java failed (see above)"
    cp "$CACHE/java-build/ecg-flink-anon-connectors.jar" "$PROJECT_JAR.tmp"
    mv "$PROJECT_JAR.tmp" "$PROJECT_JAR"
    echo "$JAVA_HASH" > "$JAVA_STAMP"
    did "built the Java helpers with Maven -> $PROJECT_JAR"
else
    log "Java helpers up to date ($PROJECT_JAR)"
fi

# ---------------------------------------------------------------------------------------------
# 8. Optional: independent privacy checkers and reference beat detectors

if [ "$WITH_CHECKERS" -eq 1 ]; then
    bash scripts/setup_checkers.sh | sed 's/^/[setup] /'
    log "checkers venv ready (scripts/setup_checkers.sh)"
    bash scripts/setup_refs.sh | sed 's/^/[setup] /'
    log "reference detectors venv ready (scripts/setup_refs.sh)"
    bash scripts/setup_flower.sh | sed 's/^/[setup] /'
    log "Flower venv ready (scripts/setup_flower.sh)"
fi

# ---------------------------------------------------------------------------------------------

if [ "${#DONE[@]}" -eq 0 ]; then
    log "done: everything was already set up"
else
    log "done. Changes:"
    for line in "${DONE[@]}"; do log "  - $line"; done
fi
log "activate with: source ${VENV#"$ROOT"/}/bin/activate"
