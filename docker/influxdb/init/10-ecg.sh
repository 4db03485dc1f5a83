#!/bin/bash
# Runs once, right after the first setup of InfluxDB 2.x (official image, /docker-entrypoint-initdb.d),
# with the influx CLI logged in as the admin and the ids of the initial org/bucket in the environment.
set -euo pipefail

# InfluxQL (Grafana; the 1.x-compatible /query endpoint) finds the bucket through a DBRP mapping:
# database "<bucket>", retention policy "autogen".
influx v1 dbrp create --db "${DOCKER_INFLUXDB_INIT_BUCKET}" --rp autogen \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" --default

# Grafana reads with its own read-only v1 user, never with the admin token.
influx v1 auth create --username "${GRAFANA_INFLUX_USER}" --password "${GRAFANA_INFLUX_PASSWORD}" \
    --read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" > /dev/null
echo "ecg: DBRP ${DOCKER_INFLUXDB_INIT_BUCKET}/autogen and read-only user ${GRAFANA_INFLUX_USER} created"
