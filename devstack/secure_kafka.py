"""A secured listener for the local Apache Kafka broker: TLS with a certificate authority made here, SASL/SCRAM
users created when the log directory is formatted, and StandardAuthorizer (ACLs, connectors/kafka_acls.py).

    pki = make_pki(tmp / "pki")                              # ca.pem, broker.pem (key + certificate chain)
    security = BrokerSecurity(pki, users={"ecg-job": "...", "ecg-device": "..."})
    with LocalStack(run_dir, kafka_security=security) as stack:
        stack.kafka_bootstrap                                 # SASL_SSL://127.0.0.1:PORT, the only client listener
        security.client("ecg-job")                            # connectors.kafka_security.KafkaSecurity of a user

The broker's listeners: ``SASL_SSL`` (clients and the broker's own inter-broker connections, SCRAM-SHA-512,
the admin user), ``CONTROLLER`` (SASL_PLAINTEXT with PLAIN and only the admin user, on 127.0.0.1: SCRAM
credentials live in the metadata the controller serves, so they cannot log in to it). ``super.users`` is the
admin user alone; everyone else needs ACLs.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from connectors.kafka_security import KafkaSecurity

MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # the CA certificate (PEM): what clients trust
    keystore_file: Path  # the broker's private key (PKCS#8, unencrypted) and certificate chain (PEM)


def make_pki(directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost", "kafka"),
             name: str = "ecg-test", days: int = 2) -> Pki:
    """A new CA and a broker certificate it signs for ``hosts`` (IP addresses and DNS names), valid ``days``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} broker")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    keystore = directory / "broker.pem"
    keystore.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    )
    keystore.chmod(0o600)
    return Pki(ca_file, keystore)


@dataclass(frozen=True)
class BrokerSecurity:
    """The secured listener of a LocalStack broker (see the module docstring)."""

    pki: Pki
    users: Mapping[str, str] = field(default_factory=dict)  # SCRAM users -> passwords (besides the admin)
    admin_user: str = "admin"
    admin_password: str = field(default_factory=lambda: secrets.token_hex(16))

    def client(self, user: str, password: str | None = None, ca_file: Path | None = None) -> KafkaSecurity:
        """Client settings of ``user`` (its own password unless one is given; this CA unless another is)."""
        if password is None:
            password = self.admin_password if user == self.admin_user else self.users[user]
        return KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism=MECHANISM, sasl_username=user,
                             sasl_password=password, ssl_ca_file=str(ca_file or self.pki.ca_file))

    @property
    def admin(self) -> KafkaSecurity:
        return self.client(self.admin_user)

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users with the log directory."""
        arguments: list[str] = []
        for user, password in {self.admin_user: self.admin_password, **self.users}.items():
            arguments += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return arguments

    def broker_properties(self, port: int, controller_port: int) -> str:
        """The listener part of the broker's server.properties."""
        admin, password = self.admin_user, self.admin_password
        return f"""\
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms={MECHANISM}
sasl.mechanism.inter.broker.protocol={MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
required username="{admin}" password="{password}";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
required username="{admin}" password="{password}" user_{admin}="{password}";
ssl.keystore.type=PEM
ssl.keystore.location={self.pki.keystore_file}
ssl.truststore.type=PEM
ssl.truststore.location={self.pki.ca_file}
ssl.client.auth=none
authorizer.class.name={AUTHORIZER}
super.users=User:{admin}
allow.everyone.if.no.acl.found=false
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Certificates for the compose stack's broker (docker-compose.yml mounts them from docker/kafka/secrets)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m devstack.secure_kafka",
        description="Make a CA and a broker certificate for docker-compose.yml's Kafka (SASL_SSL listeners): "
                    "ca.pem (what clients trust: KAFKA_SSL_CA_FILE) and broker.pem (the broker's key + chain).")
    parser.add_argument("--out", type=Path, default=Path("docker/kafka/secrets"))
    parser.add_argument("--host", action="append", default=[],
                        help="a name or address devices use to reach the broker (KAFKA_EXTERNAL_HOST); repeatable. "
                             "kafka, localhost and 127.0.0.1 are always included")
    parser.add_argument("--days", type=int, default=825, help="validity of both certificates")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    if (args.out / "broker.pem").exists() and not args.force:
        print(f"{args.out}/broker.pem exists (use --force to replace it)")
        return 0
    hosts = list(dict.fromkeys(["kafka", "localhost", "127.0.0.1", *args.host]))
    args.out.mkdir(parents=True, exist_ok=True)
    args.out.chmod(0o700)  # the host's other users never reach the key; the broker container reads broker.pem
    pki = make_pki(args.out, hosts, name="ecg-flink-anon", days=args.days)
    pki.keystore_file.chmod(0o644)  # bind-mounted alone into the kafka container (its user is not the host's)
    print(f"CA {pki.ca_file}, broker certificate for {', '.join(hosts)}: {pki.keystore_file} ({args.days} days; "
          "a hospital PKI's files can take their place)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
