"""Kafka client security from the settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*), one place for
every client of the project: the job's Kafka source and sinks and its liveness probe (Java properties), the
pre-flight check at job start, the simulator and the local stack's admin client (kafka-python).

Java clients get the PEM files' contents inline (``ssl.truststore.certificates``, ``ssl.keystore.key``, ...),
read when the job is built: the files need to exist only where the job is started, not on the TaskManagers.
Every inline value and the JAAS line are of Kafka's PASSWORD type, which the clients log as ``[hidden]``.

No PyFlink import here: the simulator and the tests use it too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from connectors.config import SETTINGS, ConfigError, check_kafka_security, read_secret_file

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class KafkaSecurity:
    """The client security settings (fields = the settings ``kafka_<field>``)."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_ca_file: str = ""
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    ssl_key_password: str = ""

    def __repr__(self) -> str:
        shown = {f.name: ("***" if "password" in f.name and getattr(self, f.name) else getattr(self, f.name))
                 for f in fields(self)}
        return f"KafkaSecurity({shown})"

    @classmethod
    def from_settings(cls, settings: Any) -> KafkaSecurity:
        return cls(**{f.name: getattr(settings, "kafka_" + f.name) for f in fields(cls)})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """From environment variables of the same names (``<NAME>_FILE`` for the passwords): the simulator's way."""
        environ = os.environ if environ is None else environ
        by_env = {setting.env: setting for setting in SETTINGS}
        values: dict[str, Any] = {}
        for f in fields(cls):
            setting = by_env["KAFKA_" + f.name.upper()]
            raw = environ.get(setting.env)
            if raw is None and setting.secret and environ.get(setting.env + "_FILE"):
                raw = read_secret_file(setting.env + "_FILE", environ[setting.env + "_FILE"])
            if raw is None:
                raw = setting.default or ""
            try:
                values["kafka_" + f.name] = setting.parse(raw)
            except ValueError as error:
                raise ConfigError(f"invalid {setting.env}: {error}") from None
        check_kafka_security(values)
        return cls(**{f.name: values["kafka_" + f.name] for f in fields(cls)})

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def java_properties(self) -> dict[str, str]:
        """Properties of a Java Kafka client (consumer, producer, admin)."""
        properties = {"security.protocol": self.security_protocol}
        if self.uses_sasl:
            properties["sasl.mechanism"] = self.sasl_mechanism
            properties["sasl.jaas.config"] = (
                f"{_LOGIN_MODULES[self.sasl_mechanism]} required username={_jaas_quote(self.sasl_username)} "
                f"password={_jaas_quote(self.sasl_password)};"
            )
        if self.uses_tls:
            if self.ssl_ca_file:
                properties["ssl.truststore.type"] = "PEM"
                properties["ssl.truststore.certificates"] = _pem(self.ssl_ca_file, "KAFKA_SSL_CA_FILE")
            if self.ssl_cert_file:
                properties["ssl.keystore.type"] = "PEM"
                properties["ssl.keystore.certificate.chain"] = _pem(self.ssl_cert_file, "KAFKA_SSL_CERT_FILE")
                properties["ssl.keystore.key"] = _pem(self.ssl_key_file, "KAFKA_SSL_KEY_FILE")
                if self.ssl_key_password:
                    properties["ssl.key.password"] = self.ssl_key_password
        return properties

    def kafka_python_config(self) -> dict[str, Any]:
        """Keyword arguments of a kafka-python client (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            config.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        if self.uses_tls:
            if self.ssl_ca_file:
                config["ssl_cafile"] = self.ssl_ca_file
            if self.ssl_cert_file:
                config.update(ssl_certfile=self.ssl_cert_file, ssl_keyfile=self.ssl_key_file)
                if self.ssl_key_password:
                    config["ssl_password"] = self.ssl_key_password
        return config


def _pem(path: str, setting: str) -> str:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"invalid {setting}: cannot read {path} ({error.__class__.__name__})") from None
    if "-----BEGIN " not in text:
        raise ConfigError(f"invalid {setting}: {path} holds no PEM block")
    return text
