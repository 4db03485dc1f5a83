"""Kafka client security settings: validation, *_FILE secrets, the Java and kafka-python client configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.config import ConfigError, load_settings
from connectors.kafka_security import KafkaSecurity

SECRET = "s3cret-value-for-tests-0123456789"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _load(tmp_path: Path, environ: dict[str, str], dotenv: str = "") -> object:
    env_file = tmp_path / ".env"
    env_file.write_text(dotenv)
    return load_settings(["--env-file", str(env_file)], {"PSEUDONYM_SECRET": SECRET, **environ})


def test_plaintext_by_default(tmp_path: Path) -> None:
    security = KafkaSecurity.from_settings(_load(tmp_path, {}))
    assert security.java_properties() == {"security.protocol": "PLAINTEXT"}
    assert security.kafka_python_config() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_properties_inline_pem_and_masked_password(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    settings = _load(tmp_path, {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "ecg-job",
                                "KAFKA_SASL_PASSWORD": 'p"a\\ss', "KAFKA_SSL_CA_FILE": str(ca)})
    security = KafkaSecurity.from_settings(settings)
    properties = security.java_properties()
    assert properties["security.protocol"] == "SASL_SSL"
    assert properties["sasl.mechanism"] == "SCRAM-SHA-512"
    assert properties["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="ecg-job" password="p\\"a\\\\ss";')
    assert properties["ssl.truststore.type"] == "PEM" and properties["ssl.truststore.certificates"] == PEM
    assert security.kafka_python_config() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "ecg-job",
        "sasl_plain_password": 'p"a\\ss', "ssl_cafile": str(ca)}
    assert 'p"a' not in repr(settings) and 'p"a' not in repr(security)


def test_password_from_file_env_or_dotenv(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("from-a-file\n")
    base = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"}
    settings = _load(tmp_path, {**base, "KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert settings.kafka_sasl_password == "from-a-file"  # type: ignore[attr-defined]
    assert settings.sources["kafka_sasl_password"] == "env KAFKA_SASL_PASSWORD_FILE"  # type: ignore[attr-defined]
    # .env.example's empty KAFKA_SASL_PASSWORD= does not hide a *_FILE next to it
    settings = _load(tmp_path, base, dotenv=f"KAFKA_SASL_PASSWORD=\nKAFKA_SASL_PASSWORD_FILE={secret}\n")
    assert settings.kafka_sasl_password == "from-a-file"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE"):
        _load(tmp_path, {**base, "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    assert KafkaSecurity.from_environ({**base, "KAFKA_SASL_PASSWORD_FILE": str(secret)}).sasl_password == "from-a-file"


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
         "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CA_FILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": __file__},
         "KAFKA_SSL_CERT_FILE / KAFKA_SSL_KEY_FILE"),
        ({"KAFKA_SSL_CA_FILE": __file__}, "does not use TLS"),
    ],
)
def test_invalid_security_settings_name_the_setting(tmp_path: Path, environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _load(tmp_path, environ)


def test_client_certificate_inline(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text(PEM)
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    security = KafkaSecurity("SSL", ssl_cert_file=str(cert), ssl_key_file=str(key), ssl_key_password="kp")
    properties = security.java_properties()
    assert properties["ssl.keystore.type"] == "PEM"
    assert properties["ssl.keystore.certificate.chain"] == PEM
    assert "PRIVATE KEY" in properties["ssl.keystore.key"] and properties["ssl.key.password"] == "kp"
    assert security.kafka_python_config()["ssl_certfile"] == str(cert)
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no PEM block"):
        KafkaSecurity("SSL", ssl_ca_file=str(not_pem)).java_properties()
