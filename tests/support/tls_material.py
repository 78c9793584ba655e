"""Test PKI made with ``cryptography``: CAs, server and client certificates, SSL contexts.

Everything is ECDSA P-256 (the whitepaper allows EC >= 224 bits; the charger's store
refuses weaker keys) and made fresh per test session, so nothing is checked in.

    ca = make_ca("Test CSMS Root")                  # CentralSystemRootCertificate
    leaf = ca.issue_server()                         # SAN 127.0.0.1 + localhost, valid now
    ctx = server_context(leaf, tmp_path)             # for CentralSystem(ssl_context=ctx)
    chain = ca.sign_csr(csr_pem)                     # CertificateSigned for the charger's CSR
"""

from __future__ import annotations

import ipaddress
import itertools
import ssl
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_files = itertools.count(1)


def _name(cn: str, org: str = "evsectl tests") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def key_pem_of(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


@dataclass(frozen=True)
class Leaf:
    """A certificate with its key and the chain a server or client presents (leaf first)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def cert_pem(self) -> str:
        return pem_of(self.cert)

    @property
    def chain_pem(self) -> str:
        return "".join(pem_of(c) for c in self.chain)

    @property
    def key_pem(self) -> str:
        return key_pem_of(self.key)

    def files(self, directory: Path) -> tuple[Path, Path]:
        """(chain PEM, key PEM) written under ``directory`` for ``load_cert_chain``."""
        n = next(_files)
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"leaf{n}.pem", directory / f"leaf{n}.key"
        cert_path.write_text(self.chain_pem)
        key_path.write_text(self.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


@dataclass(frozen=True)
class Ca:
    """A self-signed root (or, with ``parent``, an intermediate) that issues certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    parents: tuple[x509.Certificate, ...] = ()

    @property
    def pem(self) -> str:
        return pem_of(self.cert)

    def _builder(self, subject: x509.Name, public_key, not_before: datetime, not_after: datetime):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )

    def _leaf(self, subject: x509.Name, public_key, usage, *, valid_days: float, expired: bool,
              san: list[x509.GeneralName] | None) -> x509.Certificate:
        now = datetime.now(UTC)
        if expired:
            not_before, not_after = now - timedelta(days=30), now - timedelta(days=1)
        else:
            not_before, not_after = now - timedelta(minutes=10), now + timedelta(days=valid_days)
        b = (
            self._builder(subject, public_key, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=True, key_cert_sign=False,
                              crl_sign=False, encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(self.key, hashes.SHA256())

    def issue_server(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), *,
                     expired: bool = False, valid_days: float = 30) -> Leaf:
        """A TLS server certificate for ``hosts`` (IP addresses and DNS names in the SAN)."""
        key = _key()
        san: list[x509.GeneralName] = []
        for host in hosts:
            try:
                san.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                san.append(x509.DNSName(host))
        cert = self._leaf(_name(hosts[0]), key.public_key(), ExtendedKeyUsageOID.SERVER_AUTH,
                          valid_days=valid_days, expired=expired, san=san)
        return Leaf(cert, key, (cert, *self._chain_above()))

    def issue_client(self, cn: str, *, expired: bool = False) -> Leaf:
        """A TLS client certificate (the CSMS side never sees its key: for negative tests)."""
        key = _key()
        cert = self._leaf(_name(cn), key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH,
                          valid_days=30, expired=expired, san=None)
        return Leaf(cert, key, (cert, *self._chain_above()))

    def sign_csr(self, csr_pem: str, *, valid_days: float = 30) -> x509.Certificate:
        """What a CSMS's CA does with the charger's SignCertificate CSR: a client certificate."""
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        assert csr.is_signature_valid, "the CSR is not signed by its own key"
        return self._leaf(csr.subject, csr.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH,
                          valid_days=valid_days, expired=False, san=None)

    def issue_code_signing(self, cn: str, key, *, not_before: datetime | None = None,
                           not_after: datetime | None = None) -> x509.Certificate:
        """A firmware signing certificate (EKU codeSigning) for ``key`` (RSA or EC); valid
        from yesterday for a year unless told otherwise (SignedUpdateFirmware, R-FW 2)."""
        now = datetime.now(UTC)
        return (
            self._builder(_name(cn), key.public_key(), not_before or now - timedelta(days=1),
                          not_after or now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=False,
                              crl_sign=False, encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def intermediate(self, cn: str) -> Ca:
        key = _key()
        now = datetime.now(UTC)
        cert = (
            self._builder(_name(cn), key.public_key(), now - timedelta(minutes=10), now + timedelta(days=60))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return Ca(cert, key, (self.cert, *self.parents))

    def _chain_above(self) -> tuple[x509.Certificate, ...]:
        """Intermediates a leaf of ours presents after itself (never the root)."""
        return (self.cert, *self.parents[:-1]) if self.parents else ()


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                         crl_sign=True, encipher_only=False, decipher_only=False)


def make_ca(cn: str) -> Ca:
    """A self-signed root CA valid from ten minutes ago for a year."""
    key = _key()
    now = datetime.now(UTC)
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=10))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Ca(cert, key)


def server_context(
    leaf: Leaf, directory: Path, *, client_ca: Ca | None = None, client_optional: bool = False,
    minimum_version: ssl.TLSVersion | None = None, maximum_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A server-side context presenting ``leaf``; with ``client_ca`` it requires a client
    certificate issued by that CA (security profile 3); with ``client_optional`` too, a
    client without one is let in (profile 2 and 3 on one endpoint)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    with warnings.catch_warnings():  # TLSv1_1 is deprecated: that is the point of such a server
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum_version is not None:
            ctx.minimum_version = minimum_version
        if maximum_version is not None:
            ctx.maximum_version = maximum_version
    cert_path, key_path = leaf.files(directory)
    ctx.load_cert_chain(cert_path, key_path)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL if client_optional else ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca.pem)
    return ctx
