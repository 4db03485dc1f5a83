# Images of docker-compose.yml. `runtime` (the default target): the Flink JobManager, TaskManagers and the
# job submitter: the official Flink image + Python 3.11 + requirements.txt + the Kafka connector jars + the
# project's Kafka deserializer jar + the job's Python packages. `simulator`: the demo's ECG simulator.
#
# Pins must match the rest of the repository (tests/devstack/test_deployment_checks.py checks them):
#   FLINK_VERSION   = apache-flink in requirements.txt (the Python job and the cluster run the same Flink)
#   PYTHON_VERSION  = requires-python in pyproject.toml
#   *_ARTIFACT, *_SHA256 = CONNECTOR_JARS (Maven coordinates, SHA-256) in connectors/jars.py
# No secret is ever built into this image: they reach the job only through the submitter's environment.

ARG FLINK_VERSION=2.0.2
ARG PYTHON_VERSION=3.11

# ---- Flink + Python 3.11 + requirements.txt ------------------------------------------------------------
FROM flink:${FLINK_VERSION}-scala_2.12-java17 AS python
ARG PYTHON_VERSION
USER root
# The Flink image is Ubuntu 22.04 (jammy), whose python3.11 package lives in universe.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-venv"; \
    rm -rf /var/lib/apt/lists/*; \
    "python${PYTHON_VERSION}" -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN set -eux; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

# ---- Kafka connector jars from Maven Central (mvn -C: strict checksums), pinned like connectors/jars.py --
FROM maven:3.9.9-eclipse-temurin-17 AS jars
ARG MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
ARG FLINK_CONNECTOR_KAFKA_ARTIFACT=org.apache.flink:flink-connector-kafka:4.0.1-2.0
ARG FLINK_CONNECTOR_KAFKA_SHA256=842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228
ARG KAFKA_CLIENTS_ARTIFACT=org.apache.kafka:kafka-clients:3.9.1
ARG KAFKA_CLIENTS_SHA256=7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9
WORKDIR /build
RUN set -eux; \
    for artifact in "${FLINK_CONNECTOR_KAFKA_ARTIFACT}" "${KAFKA_CLIENTS_ARTIFACT}"; do \
        mvn -B -q -C -Dstyle.color=never "${MAVEN_DEPENDENCY_PLUGIN}:copy" "-Dartifact=${artifact}" \
            -DoutputDirectory=/build/jars -Dmdep.stripVersion=true; \
    done; \
    cd jars; \
    printf '%s  %s\n' "${FLINK_CONNECTOR_KAFKA_SHA256}" flink-connector-kafka.jar \
                      "${KAFKA_CLIENTS_SHA256}" kafka-clients.jar | sha256sum -c -

# ---- the verified connector jars; the MIT-BIH record for the simulator -----------------------------------
FROM python AS downloads
COPY --from=jars /build/jars /build/jars
COPY connectors /build/src/connectors
COPY devstack /build/src/devstack
RUN cd /build/src && /opt/venv/bin/python -m devstack.ecg_data --cache-dir /build/data

# ---- the project's Kafka deserializer (connectors/java), compiled against this Flink ----------------------
FROM eclipse-temurin:17-jdk-jammy AS java
COPY --from=python /opt/flink/lib /flink/lib
COPY --from=python /opt/flink/opt /flink/opt
COPY --from=downloads /build/jars /jars
COPY connectors/java /src
RUN set -eux; \
    mkdir /classes; \
    javac --release 17 -nowarn -cp "/flink/lib/*:/flink/opt/*:/jars/*" -d /classes $(find /src/src/main/java -name '*.java'); \
    jar cf /ecg-flink-anon-connectors.jar -C /classes .

# ---- the demo simulator (docker-compose --profile demo): development code, never part of the job's image -
# What devstack.simulator imports (flink_jobs/shipping.py: job_packages(["devstack.simulator"])) + MIT-BIH.
FROM python AS simulator
COPY --from=downloads /build/data /opt/ecg/.cache/data
COPY connectors /opt/ecg/connectors
COPY contract /opt/ecg/contract
COPY devstack /opt/ecg/devstack
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/ecg \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/ecg
USER flink

# ---- runtime (the default target): JobManager, TaskManagers, submitter ------------------------------------
FROM python AS runtime
# PyFlink jobs on a cluster need flink-python on the cluster classpath.
RUN cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/ \
    && mkdir -p /flink-checkpoints \
    && chown flink:flink /flink-checkpoints
COPY --from=downloads /build/jars /opt/ecg/.cache/jars
COPY --from=java /ecg-flink-anon-connectors.jar /opt/ecg/.cache/jars/ecg-flink-anon-connectors.jar
# Code is owned by root and read-only for the flink user the containers run as. Exactly the job's packages
# (its import closure: python -m flink_jobs.shipping) and docker/ (submitter, health check); no devstack, testkit,
# tests or benchmarks. Checked against the imports by tests/devstack/test_deployment_checks.py, and run
# from a copy of this tree by tests/integration/test_image_tree.py.
COPY anomaly /opt/ecg/anomaly
COPY cardio /opt/ecg/cardio
COPY connectors /opt/ecg/connectors
COPY contract /opt/ecg/contract
COPY docker /opt/ecg/docker
COPY federated /opt/ecg/federated
COPY flink_jobs /opt/ecg/flink_jobs
COPY hierarchy /opt/ecg/hierarchy
COPY operators /opt/ecg/operators
COPY privacy /opt/ecg/privacy
ENV PATH=/opt/venv/bin:$PATH \
    PYFLINK_CLIENT_EXECUTABLE=/opt/venv/bin/python \
    PYTHONPATH=/opt/ecg \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/ecg
USER flink
