#!/bin/bash
# kafka service of docker-compose.yml: one Apache Kafka KRaft node (broker + controller) whose client listeners
# are all SASL_SSL, with ACLs enforced (StandardAuthorizer; the ACL set: connectors/kafka_acls.py, applied by
# the kafka-acls service). The same listener set-up as devstack/secure_kafka.py, which the tests run.
#
#   INTERNAL  kafka:9092                      the stack's services (SCRAM-SHA-512; the broker's own connections)
#   EXTERNAL  :9094, advertised as EXTERNAL_HOST:EXTERNAL_PORT  devices outside the compose network
#   CONTROLLER 127.0.0.1:9093 (inside the container only; PLAIN, the admin alone)
#
# Environment: ECG_KAFKA_ADMIN_PASSWORD (the super user `admin`, created with the log directory),
# EXTERNAL_HOST, EXTERNAL_PORT, CLUSTER_ID; the broker's key and certificate chain in $SECRETS/broker.pem
# (python -m devstack.secure_kafka, or your PKI's). KAFKA_BIN, DATA_DIR, SECRETS, *_PORT, INTERNAL_HOST: for tests.
set -euo pipefail
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
DATA_DIR=${DATA_DIR:-/var/lib/kafka/data}
SECRETS=${SECRETS:-/etc/kafka/secrets}
INTERNAL_HOST=${INTERNAL_HOST:-kafka}
INTERNAL_PORT=${INTERNAL_PORT:-9092}
CONTROLLER_PORT=${CONTROLLER_PORT:-9093}
LISTEN_EXTERNAL_PORT=${LISTEN_EXTERNAL_PORT:-9094}
: "${ECG_KAFKA_ADMIN_PASSWORD:?ECG_KAFKA_ADMIN_PASSWORD is required}"
: "${EXTERNAL_HOST:?EXTERNAL_HOST is required}"
: "${EXTERNAL_PORT:?EXTERNAL_PORT is required}"
[ -r "$SECRETS/broker.pem" ] && [ -r "$SECRETS/ca.pem" ] || { echo "no $SECRETS/broker.pem or ca.pem: run python -m devstack.secure_kafka" >&2; exit 1; }
password=$ECG_KAFKA_ADMIN_PASSWORD
case "$password" in *'"'*|*'\'*|*' '*) echo "ECG_KAFKA_ADMIN_PASSWORD: no quotes, backslashes or spaces" >&2; exit 1;; esac
conf=$(mktemp -d)/server.properties
umask 077
cat > "$conf" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CONTROLLER_PORT}
controller.listener.names=CONTROLLER
listeners=INTERNAL://:${INTERNAL_PORT},EXTERNAL://:${LISTEN_EXTERNAL_PORT},CONTROLLER://127.0.0.1:${CONTROLLER_PORT}
advertised.listeners=INTERNAL://${INTERNAL_HOST}:${INTERNAL_PORT},EXTERNAL://${EXTERNAL_HOST}:${EXTERNAL_PORT}
listener.security.protocol.map=INTERNAL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${password}";
listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${password}" user_admin="${password}";
ssl.keystore.type=PEM
ssl.keystore.location=${SECRETS}/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=${SECRETS}/ca.pem
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
log.dirs=${DATA_DIR}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# room above KAFKA_TRANSACTION_TIMEOUT_MS (KAFKA_DELIVERY=exactly-once), which must stay below it
transaction.max.timeout.ms=3600000
group.initial.rebalance.delay.ms=0
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
EOF
# Client settings of the admin, for the healthcheck (docker/kafka/admin-client.sh writes the same for the init).
cat > /tmp/admin-client.properties <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${password}";
ssl.truststore.type=PEM
ssl.truststore.location=${SECRETS}/ca.pem
EOF
# The first start formats the log directory and creates the admin's SCRAM credential with it.
"$KAFKA_BIN/kafka-storage.sh" format --ignore-formatted -t "${CLUSTER_ID:-ZWNnLWZsaW5rLWFub24tMQ}" -c "$conf" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=${password}]"
exec "$KAFKA_BIN/kafka-server-start.sh" "$conf"
