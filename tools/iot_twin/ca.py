"""The twin's certificate authority: a CA key and certificate kept in the state directory.

It issues the server certificate the endpoint presents (valid for ``localhost`` and
``127.0.0.1``), device certificates, and certificates for CSRs (CreateCertificateFromCsr).
Certificate ids are the SHA-256 of the DER certificate in lower-case hex, the form AWS
uses (64 hex characters).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import persist

Clock = Callable[[], float]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
DEFAULT_CA_NAME = "mqtt_v5 AWS IoT twin CA"
# AWS-issued device certificates are "AWS IoT Certificate" valid until the end of 2049.
AWS_DEVICE_CERT_CN = "AWS IoT Certificate"
DEVICE_NOT_AFTER = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
SERVER_HOSTS = ("localhost", "127.0.0.1")


class InvalidCsrError(ValueError):
    """The CSR is not PEM, does not parse, or its signature does not verify."""


def generate_key(key_type: str = "rsa") -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A new private key: ``rsa`` (2048 bits, what AWS issues) or ``ec`` (P-256)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type: {key_type!r}")


def key_to_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """PKCS#8 PEM, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def cert_to_pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_cert(pem: str | bytes) -> x509.Certificate:
    """Parse one PEM certificate (raises ValueError if it is not one)."""
    return x509.load_pem_x509_certificate(pem.encode("ascii") if isinstance(pem, str) else pem)


def certificate_id(pem: str | bytes) -> str:
    """AWS's certificate id: SHA-256 of the DER certificate, lower-case hex."""
    der = load_cert(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(ts), tz=dt.UTC)


class CertificateAuthority:
    """A CA that signs server and device certificates; time from ``clock``."""

    def __init__(
        self,
        key: CertificateIssuerPrivateKeyTypes,
        cert: x509.Certificate,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.key = key
        self.cert = cert
        self.clock = clock

    @classmethod
    def create(
        cls, common_name: str = DEFAULT_CA_NAME, *, clock: Clock = time.time
    ) -> CertificateAuthority:
        """A fresh self-signed CA (EC P-256, valid 20 years from ``clock()``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _utc(clock())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=20 * 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, clock=clock)

    @classmethod
    def load_or_create(
        cls, state_dir: Path | str, *, clock: Clock = time.time
    ) -> CertificateAuthority:
        """Load ``ca.pem`` / ``ca.key`` from ``state_dir``, creating them the first time."""
        state_dir = Path(state_dir)
        cert_path, key_path = state_dir / CA_CERT_FILE, state_dir / CA_KEY_FILE
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                raise ValueError(f"{key_path}: unsupported CA key type")
            return cls(key, load_cert(cert_path.read_bytes()), clock=clock)
        ca = cls.create(clock=clock)
        persist.write_text_atomic(key_path, key_to_pem(ca.key), mode=0o600)  # type: ignore[arg-type]
        persist.write_text_atomic(cert_path, ca.cert_pem)
        return ca

    @property
    def cert_pem(self) -> str:
        """The CA certificate, PEM (what clients trust; ``ca.pem`` in the state dir)."""
        return cert_to_pem(self.cert)

    def issue(
        self,
        public_key: CertificatePublicKeyTypes,
        subject: x509.Name,
        *,
        hosts: Sequence[str] = (),
        not_after: dt.datetime | None = None,
    ) -> x509.Certificate:
        """Sign a leaf certificate; ``hosts`` makes it a server certificate for those names."""
        now = _utc(self.clock())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(not_after or DEVICE_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()  # type: ignore[arg-type]
                ),
                critical=False,
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_server_cert(self, hosts: Sequence[str] = SERVER_HOSTS) -> tuple[str, str]:
        """A server certificate and key (PEM) valid for ``hosts`` for 825 days."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        not_after = _utc(self.clock()) + dt.timedelta(days=825)
        cert = self.issue(key.public_key(), subject, hosts=hosts, not_after=not_after)
        return cert_to_pem(cert), key_to_pem(key)

    def server_credentials(
        self, state_dir: Path | str, hosts: Sequence[str] = SERVER_HOSTS
    ) -> tuple[Path, Path]:
        """Paths of ``server.pem`` / ``server.key`` in ``state_dir``, issued the first time."""
        state_dir = Path(state_dir)
        cert_path, key_path = state_dir / SERVER_CERT_FILE, state_dir / SERVER_KEY_FILE
        if not (cert_path.exists() and key_path.exists()):
            cert_pem, key_pem = self.issue_server_cert(hosts)
            persist.write_text_atomic(key_path, key_pem, mode=0o600)
            persist.write_text_atomic(cert_path, cert_pem)
        return cert_path, key_path

    def issue_device_cert(
        self, common_name: str = AWS_DEVICE_CERT_CN, *, key_type: str = "rsa"
    ) -> tuple[str, str]:
        """A new key and a client certificate for it with ``CN=common_name`` (PEM pair)."""
        key = generate_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return cert_to_pem(self.issue(key.public_key(), subject)), key_to_pem(key)

    def sign_csr(self, csr_pem: str | bytes, *, common_name: str | None = None) -> str:
        """Sign a PEM CSR, keeping its subject unless ``common_name`` replaces it."""
        data = csr_pem.encode("utf-8") if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as e:
            raise InvalidCsrError(str(e)) from None
        if not csr.is_signature_valid:
            raise InvalidCsrError("the CSR signature does not verify")
        subject = csr.subject
        if common_name is not None:
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        try:
            return cert_to_pem(self.issue(csr.public_key(), subject))
        except (TypeError, ValueError) as e:
            raise InvalidCsrError(str(e)) from None

    def issued(self, pem: str | bytes) -> bool:
        """True if this CA signed the certificate ``pem``."""
        try:
            load_cert(pem).verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def subject_fields(pem: str | bytes) -> dict[str, list[str]]:
    """Subject and issuer attributes as policy variables name them (``Subject.CommonName``).

    Keys are the part after ``iot:Certificate.``; values keep the certificate's order
    (§cert-policy-variables: multi-valued attributes, first value by default).
    """
    cert = load_cert(pem)
    names = {
        NameOID.COMMON_NAME: "CommonName",
        NameOID.COUNTRY_NAME: "Country",
        NameOID.ORGANIZATION_NAME: "Organization",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "OrganizationalUnit",
        NameOID.STATE_OR_PROVINCE_NAME: "State",
        NameOID.SERIAL_NUMBER: "SerialNumber",
        NameOID.TITLE: "Title",
        NameOID.SURNAME: "Surname",
        NameOID.GIVEN_NAME: "GivenName",
        NameOID.INITIALS: "Initials",
        NameOID.PSEUDONYM: "Pseudonym",
        NameOID.GENERATION_QUALIFIER: "GenerationQualifier",
        NameOID.DN_QUALIFIER: "DistinguishedNameQualifier",
    }
    out: dict[str, list[str]] = {}
    for prefix, name in (("Subject", cert.subject), ("Issuer", cert.issuer)):
        for attr in name:
            label = names.get(attr.oid)
            if label is not None:
                value = attr.value if isinstance(attr.value, str) else attr.value.decode()
                out.setdefault(f"{prefix}.{label}", []).append(value)
    out["SerialNumber"] = [str(cert.serial_number)]
    return out
