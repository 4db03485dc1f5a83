#!/bin/bash
# kafka-init service of docker-compose.yml: create the job's topics, idempotently, as the broker's admin.
#   ECG_TOPICS    "name:partitions ..."  (docker-compose.yml derives the names from .env)
#   TOPIC_CONFIG  "key=value ..."        applied to every topic (max.message.bytes for ~10 MB frames)
#   BOOTSTRAP     the broker (its SASL_SSL listener)
#   ECG_KAFKA_ADMIN_PASSWORD, CA_FILE   the admin's SCRAM-SHA-512 login and the CA of the broker's certificate
set -euo pipefail
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
: "${ECG_KAFKA_ADMIN_PASSWORD:?ECG_KAFKA_ADMIN_PASSWORD is required}"
umask 077
client=$(mktemp)
cat > "$client" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${ECG_KAFKA_ADMIN_PASSWORD}";
ssl.truststore.type=PEM
ssl.truststore.location=${CA_FILE:-/etc/kafka/ca.pem}
EOF
config_args=()
for entry in ${TOPIC_CONFIG}; do config_args+=(--config "${entry}"); done

for spec in ${ECG_TOPICS}; do
    name="${spec%%:*}"
    partitions="${spec##*:}"
    "${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" --command-config "$client" --create \
        --if-not-exists --topic "${name}" --partitions "${partitions}" --replication-factor 1 "${config_args[@]}"
    # A topic that already existed gets the same configuration.
    "${KAFKA_BIN}/kafka-configs.sh" --bootstrap-server "${BOOTSTRAP}" --command-config "$client" --alter \
        --entity-type topics --entity-name "${name}" --add-config "$(echo "${TOPIC_CONFIG}" | tr ' ' ',')"
done
"${KAFKA_BIN}/kafka-topics.sh" --bootstrap-server "${BOOTSTRAP}" --command-config "$client" --describe
rm -f "$client"
