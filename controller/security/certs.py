"""Certificate store of the charge point (R-SEC 3; "Improved security for OCPP 1.6-J").

What it answers
    InstallCertificate.conf     `CertificateStore.install` -> "Accepted" | "Rejected" | "Failed"
    DeleteCertificate.conf      `CertificateStore.delete` -> "Accepted" | "Failed" | "NotFound"
    GetInstalledCertificateIds  `CertificateStore.installed_ids` (empty list -> the caller
                                answers NotFound, otherwise Accepted + the list)
    SignCertificate.req csr     `CertificateStore.make_csr`
    CertificateSigned.conf      `CertificateStore.accept_signed` -> "Accepted" | "Rejected"
The reason of the last non-Accepted answer is in `CertificateStore.last_reason`
(for the InvalidChargePointCertificate security event's techInfo and the log).

Layout under ``directory`` (the daemon uses ``<state>/certs/``), directory 0700,
every file 0600, every write atomic (temporary file in the same directory,
fsync, ``os.replace``, fsync of the directory)::

    CentralSystemRootCertificate.pem   installed roots of that type, one PEM bundle
    ManufacturerRootCertificate.pem    (absent when none is installed); these are
                                       both the store and the file handed to
                                       ``ssl.SSLContext.load_verify_locations``
    cp-<kid>.key                       a charge point private key (PKCS#8 PEM,
                                       ECDSA P-256); kid = first 16 hex digits of
                                       SHA-256 over its SubjectPublicKeyInfo
    charge_point.pem                   the accepted charge point certificate chain,
                                       leaf first, then intermediates (no root)

InstallCertificate. Accepted for exactly one PEM certificate that is a
self-signed root CA (basicConstraints cA true; keyUsage, when present, with
keyCertSign; RSA >= 2048 / EC >= 224 bits) valid now (not expired; not valid
before at most CLOCK_SKEW ahead). The same certificate again: Accepted, no
duplicate. Rejected: anything else (malformed PEM, zero or several
certificates, leaf or intermediate certificates, v1 roots without
basicConstraints, which cryptography's verifier cannot anchor on, an unknown
certificateType) and -- as the whitepaper's CertificateStatusEnumType says --
a store full at CertificateStoreMaxLength (`STORE_FULL_STATUS`). Failed: the
store cannot be written. AdditionalRootCertificateCheck is not implemented.

Keys. The whitepaper has the charge point generate a new key pair for each
certificate update (use cases A02/A03) and the private key never leaves it.
There is at most one *pending* key (one that no accepted certificate uses):
`ensure_key` returns it, generating it if there is none, so every retry of
SignCertificate (CertSigningRepeatTimes) carries the same public key and a late
CertificateSigned for an earlier attempt still matches. The key of the
installed certificate stays in use for TLS until a new certificate is accepted;
writing ``charge_point.pem`` is the single atomic switch (the key file it
needs is already on disk, found by its key id), and the replaced
certificate's key is removed afterwards. A re-issued certificate for the
current key leaves an outstanding pending key alone. Call `client_cert_paths`
at each connection: after a switch the old key file is gone.

Chain verification uses ``cryptography.x509.verification`` (RFC 5280 path
building: signatures, validity periods, basicConstraints cA / pathLen, name
chaining, weak keys refused) with a permissive extension policy: CA
certificates need basicConstraints cA (cryptography insists on it), end-entity
certificates are not held to the CA/Browser-Forum web profile (no SAN or EKU
required), since OCPP PKIs are not web PKIs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

log = logging.getLogger(__name__)

CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
CERT_TYPES = (CENTRAL_SYSTEM_ROOT, MANUFACTURER_ROOT)

#: InstallCertificate answer when CertificateStoreMaxLength is reached. The
#: whitepaper's CertificateStatusEnumType: "Rejected: The certificate is invalid
#: and/or incorrect OR the CPO tries to install more certificates than allowed";
#: "Failed: the certificate is valid and correct, but there is another reason".
STORE_FULL_STATUS = "Rejected"

#: Tolerance on "not valid before" of a certificate just issued by a CA whose
#: clock runs slightly ahead of ours (the charger's clock comes from NTP or
#: BootNotification): without it a fresh certificate could be refused for a
#: second's difference. Expiry ("not valid after") gets no tolerance.
CLOCK_SKEW = timedelta(minutes=5)

#: HashAlgorithmEnumType of CertificateHashDataType.
HASH_ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}

#: Smallest key sizes the whitepaper allows for certificates (RSA >= 2048
#: bits, ECC >= 224 bits); OpenSSL's default security level refuses less too.
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224

_CHAIN_FILE = "charge_point.pem"
_KEY_PREFIX = "cp-"
_KEY_SUFFIX = ".key"


class CertificateError(Exception):
    """A certificate or chain that is malformed or does not verify (the reason is the message)."""


# --------------------------------------------------------------------------- helpers


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def load_pem_certificates(pem: str) -> list[x509.Certificate]:
    """Every certificate of a PEM text, in order; CertificateError if there is none or one is bad."""
    if not isinstance(pem, str):
        raise CertificateError("not a PEM string")
    try:
        data = pem.encode("ascii")
    except UnicodeEncodeError:
        raise CertificateError("PEM text is not ASCII") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateError(f"malformed PEM: {exc}") from None
    if not certs:
        raise CertificateError("no certificate in the PEM text")
    return certs


def _ca_extension_policy() -> ExtensionPolicy:
    return ExtensionPolicy.permit_all().require_present(
        x509.BasicConstraints, Criticality.AGNOSTIC, None
    )


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
) -> list[x509.Certificate]:
    """Build and verify a path from ``leaf`` to one of ``roots`` at time ``at``.

    ``intermediates`` may be in any order and may include the root itself.
    Returns the verified path, leaf first, trust anchor last. Raises
    CertificateError with the verifier's reason.
    """
    if not roots:
        raise CertificateError("no trusted root certificate installed")
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(utc(at))
        .extension_policies(
            ca_policy=_ca_extension_policy(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        raise CertificateError(f"chain does not verify: {exc}") from None
    return list(verified.chain)


def _spki_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_id(public_key) -> str:
    return hashlib.sha256(_spki_der(public_key)).hexdigest()[:16]


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _key_too_weak(public_key) -> str | None:
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        return f"RSA key of {public_key.key_size} bits (< {MIN_RSA_BITS})"
    if (
        isinstance(public_key, ec.EllipticCurvePublicKey)
        and public_key.curve.key_size < MIN_EC_BITS
    ):
        return f"EC key of {public_key.curve.key_size} bits (< {MIN_EC_BITS})"
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA keys are not allowed"
    return None


def certificate_hash_data(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256"
) -> dict[str, str]:
    """OCPP CertificateHashDataType of ``cert`` (issued by ``issuer``).

    The fields are those of an OCSP CertID (RFC 6960 4.1.1), computed by
    cryptography's OCSP request builder: issuerNameHash = hash of the DER of
    the issuer's Name, issuerKeyHash = hash of the value (excluding tag and
    length) of the issuer certificate's subjectPublicKey BIT STRING,
    serialNumber = lower-case hexadecimal without "0x" and without leading zeroes.
    """
    try:
        algo = HASH_ALGORITHMS[algorithm]()
    except KeyError:
        raise ValueError(f"unsupported hashAlgorithm {algorithm!r}") from None
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algo).build()
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": req.issuer_name_hash.hex(),
        "issuerKeyHash": req.issuer_key_hash.hex(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def _same_hash_data(want: dict, have: dict) -> bool:
    if want.get("hashAlgorithm") != have["hashAlgorithm"]:
        return False
    for field in ("issuerNameHash", "issuerKeyHash"):
        value = want.get(field)
        if not isinstance(value, str) or value.strip().lower() != have[field]:
            return False
    serial = want.get("serialNumber")
    if not isinstance(serial, str):
        return False
    try:  # tolerate upper case and leading zeroes from a central system
        return int(serial.strip(), 16) == int(have["serialNumber"], 16)
    except ValueError:
        return False


# --------------------------------------------------------------------------- the store


class CertificateStore:
    """Roots, the charge point key pair and its certificate, under one 0700 directory.

    ``max_entries`` is CertificateStoreMaxLength (roots of all types together);
    ``max_chain`` is CertificateSignedMaxChainSize (size of the certificateChain
    text in bytes; PEM is ASCII, so bytes = characters). ``clock`` returns the
    current time (tests); certificates are checked against it. Methods are
    blocking and serialised by a lock.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_entries: int,
        max_chain: int,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if max_entries < 0 or max_chain < 0:
            raise ValueError("max_entries and max_chain must be >= 0")
        self.directory = Path(directory)
        self.max_entries = max_entries
        self.max_chain = max_chain
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self.last_reason: str | None = None
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)

    # ----------------------------------------------------------------- files

    def _now(self) -> datetime:
        return utc(self._clock())

    def _write_atomic(self, name: str, data: bytes) -> Path:
        target = self.directory / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._fsync_dir()
        return target

    def _remove(self, name: str) -> None:
        try:
            (self.directory / name).unlink()
        except FileNotFoundError:
            return
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _reject(self, status: str, reason: str) -> str:
        self.last_reason = reason
        log.info("certificate store: %s (%s)", status, reason)
        return status

    # ----------------------------------------------------------------- roots

    def roots(self, cert_type: str) -> list[x509.Certificate]:
        """The installed roots of ``cert_type``, in installation order (empty if unknown type)."""
        if cert_type not in CERT_TYPES:
            return []
        path = self.directory / f"{cert_type}.pem"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        if not data.strip():
            return []
        return x509.load_pem_x509_certificates(data)

    def _write_roots(self, cert_type: str, certs: Iterable[x509.Certificate]) -> None:
        certs = list(certs)
        if not certs:
            self._remove(f"{cert_type}.pem")
            return
        data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        self._write_atomic(f"{cert_type}.pem", data)

    def _count_roots(self) -> int:
        return sum(len(self.roots(t)) for t in CERT_TYPES)

    def _check_root(self, cert: x509.Certificate) -> str | None:
        """Why ``cert`` cannot be an installed root, or None."""
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return "not a CA certificate (no basicConstraints)"
        except ValueError as exc:
            return f"unreadable extensions: {exc}"
        if not bc.ca:
            return "not a CA certificate (basicConstraints cA false)"
        try:
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            ku = None
        if ku is not None and not ku.key_cert_sign:
            return "keyUsage lacks keyCertSign"
        if not _is_self_signed(cert):
            return "not a self-signed root certificate"
        try:
            weak = _key_too_weak(cert.public_key())
        except (ValueError, UnsupportedAlgorithm) as exc:
            return f"unusable public key: {exc}"
        if weak:
            return weak
        now = self._now()
        if cert.not_valid_after_utc < now:
            return f"expired on {cert.not_valid_after_utc.isoformat()}"
        if cert.not_valid_before_utc > now + CLOCK_SKEW:
            return f"not valid before {cert.not_valid_before_utc.isoformat()}"
        return None

    def install(self, cert_type: str, pem: str) -> str:
        """InstallCertificate: "Accepted" | "Rejected" | "Failed" (rules in the module docstring)."""
        with self._lock:
            if cert_type not in CERT_TYPES:
                return self._reject("Rejected", f"unknown certificateType {cert_type!r}")
            try:
                certs = load_pem_certificates(pem)
            except CertificateError as exc:
                return self._reject("Rejected", str(exc))
            if len(certs) != 1:
                return self._reject("Rejected", f"{len(certs)} certificates, expected exactly one")
            cert = certs[0]
            problem = self._check_root(cert)
            if problem:
                return self._reject("Rejected", problem)
            installed = self.roots(cert_type)
            if any(c == cert for c in installed):
                self.last_reason = None
                return "Accepted"  # already there: no duplicate
            if self._count_roots() >= self.max_entries:
                return self._reject(
                    STORE_FULL_STATUS,
                    f"CertificateStoreMaxLength ({self.max_entries}) reached",
                )
            try:
                self._write_roots(cert_type, [*installed, cert])
            except OSError as exc:
                return self._reject("Failed", f"cannot write the store: {exc}")
            self.last_reason = None
            log.info("installed %s serial %x", cert_type, cert.serial_number)
            return "Accepted"

    def installed_ids(self, cert_type: str, hash_algorithm: str = "SHA256") -> list[dict]:
        """GetInstalledCertificateIds: certificateHashData of each installed root of ``cert_type``."""
        with self._lock:
            return [certificate_hash_data(c, c, hash_algorithm) for c in self.roots(cert_type)]

    def has_central_root(self) -> bool:
        return bool(self.roots(CENTRAL_SYSTEM_ROOT))

    def signing_certificate_problem(self, cert_pem: str) -> str | None:
        """Why a firmware signing certificate is not trusted (None: it chains to an
        installed ManufacturerRootCertificate and is valid now)."""
        from .signature import SignatureError, verify_signing_certificate

        try:
            verify_signing_certificate(cert_pem, self.roots(MANUFACTURER_ROOT), self._now())
        except SignatureError as e:
            return e.detail or e.status
        return None

    def root_bundle_path(self, cert_type: str) -> Path | None:
        """The PEM bundle of the installed roots of ``cert_type`` (for load_verify_locations), or None."""
        if cert_type not in CERT_TYPES:
            return None
        path = self.directory / f"{cert_type}.pem"
        return path if self.roots(cert_type) else None

    def delete(self, hash_data: dict, *, protect_last_central_root: bool = False) -> str:
        """DeleteCertificate: "Accepted" | "Failed" | "NotFound".

        Matches on all four fields of certificateHashData (SHA256/384/512).
        Failed when the match is the charge point certificate (the whitepaper
        forbids deleting it) or, with ``protect_last_central_root`` (security
        profile >= 2 validates the Central System with it), the only
        CentralSystemRootCertificate.
        """
        with self._lock:
            algorithm = hash_data.get("hashAlgorithm") if isinstance(hash_data, dict) else None
            if algorithm not in HASH_ALGORITHMS:
                return self._reject("NotFound", f"unsupported hashAlgorithm {algorithm!r}")
            if self._matches_client_certificate(hash_data, algorithm):
                return self._reject("Failed", "the charge point certificate cannot be deleted")
            matched: dict[str, list[x509.Certificate]] = {}
            remaining: dict[str, list[x509.Certificate]] = {}
            for cert_type in CERT_TYPES:
                keep, gone = [], []
                for cert in self.roots(cert_type):
                    if _same_hash_data(hash_data, certificate_hash_data(cert, cert, algorithm)):
                        gone.append(cert)
                    else:
                        keep.append(cert)
                if gone:
                    matched[cert_type] = gone
                    remaining[cert_type] = keep
            if not matched:
                return self._reject("NotFound", "no installed certificate matches")
            if (
                protect_last_central_root
                and CENTRAL_SYSTEM_ROOT in matched
                and not remaining[CENTRAL_SYSTEM_ROOT]
            ):
                return self._reject("Failed", "the last CentralSystemRootCertificate is in use")
            try:
                for cert_type, keep in remaining.items():
                    self._write_roots(cert_type, keep)
            except OSError as exc:
                return self._reject("Failed", f"cannot write the store: {exc}")
            self.last_reason = None
            log.info("deleted certificate serial %s", hash_data.get("serialNumber"))
            return "Accepted"

    def _matches_client_certificate(self, hash_data: dict, algorithm: str) -> bool:
        chain = self._client_chain()
        if not chain:
            return False
        leaf = chain[0]
        for issuer in [*chain[1:], *self.roots(CENTRAL_SYSTEM_ROOT)]:
            try:
                leaf.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            return _same_hash_data(hash_data, certificate_hash_data(leaf, issuer, algorithm))
        return False

    # ----------------------------------------------------------------- charge point key

    def _key_files(self) -> dict[str, Path]:
        out = {}
        for path in self.directory.glob(f"{_KEY_PREFIX}*{_KEY_SUFFIX}"):
            kid = path.name[len(_KEY_PREFIX) : -len(_KEY_SUFFIX)]
            out[kid] = path
        return out

    def _load_key(self, path: Path) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateError(f"{path.name} is not an EC private key")
        return key

    def _client_chain(self) -> list[x509.Certificate]:
        try:
            data = (self.directory / _CHAIN_FILE).read_bytes()
        except FileNotFoundError:
            return []
        return x509.load_pem_x509_certificates(data) if data.strip() else []

    def _certified_kid(self) -> str | None:
        chain = self._client_chain()
        return _key_id(chain[0].public_key()) if chain else None

    def ensure_key(self) -> ec.EllipticCurvePrivateKey:
        """The key pair for the next (or outstanding) CSR: the pending key, created if none.

        ECDSA P-256, generated here, stored PKCS#8 PEM 0600; it is never
        returned in any other form than this object and never written elsewhere.
        """
        with self._lock:
            certified = self._certified_kid()
            pending = [p for kid, p in self._key_files().items() if kid != certified]
            if pending:
                newest = max(pending, key=lambda p: p.stat().st_mtime_ns)
                return self._load_key(newest)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            self._write_atomic(f"{_KEY_PREFIX}{_key_id(key.public_key())}{_KEY_SUFFIX}", pem)
            return key

    def make_csr(
        self,
        common_name: str,
        organization: str,
        *,
        country: str | None = None,
        serial_number_attr: str | None = None,
    ) -> str:
        """PEM CSR (RFC 2986) for SignCertificate, signed with `ensure_key` (ECDSA-SHA256).

        Subject: C (if given), O = CpoName, CN = charge point serial /
        BoxIdentifier, serialNumber attribute (if given).
        """
        if not common_name:
            raise ValueError("common_name is required")
        if not organization:
            raise ValueError("organization (CpoName) is required")
        attrs = []
        if country:
            attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        if serial_number_attr:
            attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number_attr))
        key = self.ensure_key()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name(attrs))
            .sign(key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    # ----------------------------------------------------------------- CertificateSigned

    def validate_signed(self, chain_pem: str) -> list[x509.Certificate]:
        """The chain to store (leaf, intermediates) if CertificateSigned may be accepted.

        Raises CertificateError with the reason otherwise. Stores nothing.
        """
        if not isinstance(chain_pem, str):
            raise CertificateError("certificateChain is not a string")
        size = len(chain_pem.encode("utf-8"))
        if size > self.max_chain:
            raise CertificateError(
                f"certificateChain of {size} bytes exceeds CertificateSignedMaxChainSize "
                f"({self.max_chain})"
            )
        certs = load_pem_certificates(chain_pem)
        leaf = certs[0]
        try:
            leaf_kid = _key_id(leaf.public_key())
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CertificateError(f"unusable public key in the leaf: {exc}") from None
        if leaf_kid not in self._key_files():
            raise CertificateError("the leaf certificate's public key is not ours")
        now = self._now()
        if leaf.not_valid_after_utc < now:
            raise CertificateError(f"leaf expired on {leaf.not_valid_after_utc.isoformat()}")
        at = now
        if leaf.not_valid_before_utc > now:
            if leaf.not_valid_before_utc > now + CLOCK_SKEW:
                raise CertificateError(
                    f"leaf not valid before {leaf.not_valid_before_utc.isoformat()}"
                )
            at = leaf.not_valid_before_utc  # a CA clock slightly ahead of ours
        path = verify_chain(leaf, certs[1:], self.roots(CENTRAL_SYSTEM_ROOT), at)
        return path[:-1]  # without the trust anchor, which is installed here

    def accept_signed(self, chain_pem: str) -> str:
        """CertificateSigned: "Accepted" (chain stored as the charge point certificate) | "Rejected".

        Rejected for a chain over ``max_chain`` bytes, malformed PEM, a leaf
        whose key is not one of ours, a leaf expired or not yet valid, or a
        chain that does not verify to an installed CentralSystemRootCertificate.
        Nothing is written unless Accepted.
        """
        with self._lock:
            try:
                chain = self.validate_signed(chain_pem)
            except CertificateError as exc:
                return self._reject("Rejected", str(exc))
            previous = self._certified_kid()
            data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
            try:
                self._write_atomic(_CHAIN_FILE, data)
            except OSError as exc:
                return self._reject("Rejected", f"cannot store the certificate: {exc}")
            self.last_reason = None
            if previous is not None and previous != _key_id(chain[0].public_key()):
                self._drop_key(previous)  # the replaced certificate's key: no longer used
            log.info("charge point certificate serial %x accepted", chain[0].serial_number)
            return "Accepted"

    def _drop_key(self, kid: str) -> None:
        try:
            self._remove(f"{_KEY_PREFIX}{kid}{_KEY_SUFFIX}")
        except OSError as exc:  # the switch is done; a stale key file is only clutter
            log.warning("cannot remove an unused charge point key: %s", exc)

    def client_cert_paths(self) -> tuple[Path, Path] | None:
        """(certificate chain PEM, private key PEM) for TLS profile 3, or None if none accepted."""
        with self._lock:
            kid = self._certified_kid()
            if kid is None:
                return None
            key_path = self._key_files().get(kid)
            if key_path is None:
                return None
            return self.directory / _CHAIN_FILE, key_path

    def has_client_certificate(self) -> bool:
        return self.client_cert_paths() is not None

    def client_certificate(self) -> x509.Certificate | None:
        """The accepted charge point (leaf) certificate, e.g. to watch its expiry (A03)."""
        chain = self._client_chain()
        return chain[0] if chain else None
