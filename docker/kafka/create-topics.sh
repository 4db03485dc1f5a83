#!/bin/bash
# kafka-init service of docker-compose.yml: create the job's topics, idempotently.
#   ECG_TOPICS    "name:partitions ..."  (docker-compose.yml derives the names from .env)
#   TOPIC_CONFIG  "key=value ..."        applied to every topic (max.message.bytes for ~10 MB frames)
#   BOOTSTRAP     the broker
set -euo pipefail
KAFKA_BIN=/opt/kafka/bin
config_args=()
for entry in ${TOPIC_CONFIG}; do config_args+=(--config "${entry}"); done

for spec in ${ECG_TOPICS}; do
    name="${spec%%:*}"
    partitions="${spec##*:}"
    "${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" --create --if-not-exists \
        --topic "${name}" --partitions "${partitions}" --replication-factor 1 "${config_args[@]}"
    # A topic that already existed gets the same configuration.
    "${KAFKA_BIN}/kafka-configs.sh" --bootstrap-server "${BOOTSTRAP}" --alter --entity-type topics \
        --entity-name "${name}" --add-config "$(echo "${TOPIC_CONFIG}" | tr ' ' ',')"
done
"${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" --describe
