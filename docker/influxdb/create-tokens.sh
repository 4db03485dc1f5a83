#!/bin/bash
# One-shot compose service `influxdb-tokens` (image influxdb:2.x, its `influx` CLI), run at every
# `docker-compose up` after InfluxDB is healthy; idempotent. Least privilege (issue 22 item 3):
#
#   ECG_BUCKET         anonymized output (ecg_anonymized, ecg_window_stats, ecg_dead_letters); exists from setup
#   ECG_BRANCH_BUCKET  the cardio branch's per-patient statistics (ecg_anomaly_stats, ecg_model_stats); created here
#   JOB_TOKEN_FILE     token "ecg-job":     write ECG_BUCKET and ECG_BRANCH_BUCKET, nothing else (no read)
#   GRAFANA_TOKEN_FILE token "ecg-grafana": read ECG_BUCKET, nothing else
#
# InfluxDB generates token values, so they are written to files (each on a volume of its own, mounted only into
# the service that uses it: the submitter reads INFLUX_TOKEN_FILE, Grafana's datasource $__file{...}). A token
# file that exists and names a token InfluxDB still has is kept. Tokens are never printed.
# The admin token comes from INFLUX_TOKEN or INFLUX_TOKEN_FILE (the CLI reads INFLUX_HOST / INFLUX_TOKEN / INFLUX_ORG).
# Checked by devstack/deployment_checks.py (check_influx_tokens) and, against a fake `influx` that records its
# arguments, by tests/docker/test_influx_tokens.py; not run against a real InfluxDB 2.x there.
set -euo pipefail
umask 077

: "${INFLUX_HOST:?}" "${INFLUX_ORG:?}" "${ECG_BUCKET:?}" "${ECG_BRANCH_BUCKET:?}"
: "${JOB_TOKEN_FILE:?}" "${GRAFANA_TOKEN_FILE:?}"
if [ -n "${INFLUX_TOKEN_FILE:-}" ]; then
    INFLUX_TOKEN="$(cat "${INFLUX_TOKEN_FILE}")"
fi
: "${INFLUX_TOKEN:?the admin token: INFLUX_TOKEN or INFLUX_TOKEN_FILE}"
export INFLUX_HOST INFLUX_ORG INFLUX_TOKEN

# The id of bucket $1, created (retention ECG_RETENTION, empty = forever) when missing.
bucket_id() {
    local id
    id="$(influx bucket list --name "$1" --hide-headers 2>/dev/null | awk 'NR == 1 {print $1}')" || id=""
    if [ -z "${id}" ]; then
        local retention=()
        if [ -n "${ECG_RETENTION:-}" ]; then retention=(--retention "${ECG_RETENTION}"); fi
        id="$(influx bucket create --name "$1" "${retention[@]}" --hide-headers | awk 'NR == 1 {print $1}')"
        echo "ecg: bucket $1 created" >&2
    fi
    [ -n "${id}" ] || { echo "ecg: no id for bucket $1" >&2; exit 1; }
    printf '%s' "${id}"
}

# InfluxQL (Grafana; the 1.x-compatible /query endpoint) finds a bucket through a DBRP mapping:
# database "<bucket>", retention policy "autogen".
dbrp() {
    if [ -z "$(influx v1 dbrp list --db "$1" --hide-headers 2>/dev/null || true)" ]; then
        influx v1 dbrp create --db "$1" --rp autogen --bucket-id "$2" --default > /dev/null
        echo "ecg: DBRP $1/autogen created"
    fi
}

# Token file $1 ("description" $2) with the permissions $3...: kept when InfluxDB still has its token.
token() {
    local file="$1" description="$2" token=""
    shift 2
    if [ -s "${file}" ]; then
        token="$(cat "${file}")"
        if influx auth list --json | grep -qF "\"${token}\""; then
            echo "ecg: token ${description} kept (${file})"
            return
        fi
        echo "ecg: token ${description} in ${file} is unknown to InfluxDB: creating a new one"
    fi
    token="$(influx auth create --org "${INFLUX_ORG}" --description "${description}" "$@" --json \
        | sed -n 's/^[[:space:]]*"token":[[:space:]]*"\([^"]*\)".*/\1/p')"
    [ -n "${token}" ] || { echo "ecg: no token in the answer for ${description}" >&2; exit 1; }
    printf '%s' "${token}" > "${file}.tmp"  # no newline: Grafana's $__file{} takes the file as it is
    chmod 0444 "${file}.tmp"  # the volume is mounted only into the service that uses this token
    mv -f "${file}.tmp" "${file}"
    echo "ecg: token ${description} created (${file})"
}

main_id="$(bucket_id "${ECG_BUCKET}")"
branch_id="$(bucket_id "${ECG_BRANCH_BUCKET}")"
if [ "${main_id}" = "${branch_id}" ]; then
    echo "ecg: ECG_BRANCH_BUCKET must differ from ECG_BUCKET" >&2
    exit 1
fi
dbrp "${ECG_BUCKET}" "${main_id}"
dbrp "${ECG_BRANCH_BUCKET}" "${branch_id}"

token "${JOB_TOKEN_FILE}" ecg-job --write-bucket "${main_id}" --write-bucket "${branch_id}"
token "${GRAFANA_TOKEN_FILE}" ecg-grafana --read-bucket "${main_id}"
