"""SignedUpdateFirmware checks (R-FW 2; whitepaper use case L01, "Secure firmware update").

Two steps, with the OCPP outcome each failure maps to:

`verify_signing_certificate` — when SignedUpdateFirmware.req arrives, before
    answering it. Failure -> ``SignatureError("InvalidCertificate", …)``: answer
    SignedUpdateFirmware.conf status **InvalidCertificate** and send
    SecurityEventNotification **InvalidFirmwareSigningCertificate**; nothing is
    downloaded. (RevokedCertificate is not produced: no CRL/OCSP is consulted.)
`verify_file_signature` — after the download (SignedFirmwareStatusNotification
    Downloaded), before anything is installed. Failure ->
    ``SignatureError("InvalidSignature", …)``: SignedFirmwareStatusNotification
    **InvalidSignature** and SecurityEventNotification **InvalidFirmwareSignature**;
    the file is never installed. Success -> **SignatureVerified**, then
    Installing / Installed … from the firmware installer.

The signature is over the whole file with SHA-256. Accepted schemes: RSA
PKCS#1 v1.5 (what ``openssl dgst -sha256 -sign`` makes with an RSA key), RSA-PSS
(the whitepaper names RSA-PSS; any salt length) and ECDSA (DER-encoded, as
``openssl dgst`` makes it). The whitepaper's alternative "ECSchnorr" has no
standard encoding nor implementation in ``cryptography`` and is not supported.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from controller.security.certs import CertificateError, load_pem_certificates, utc, verify_chain

INVALID_CERTIFICATE = "InvalidCertificate"
INVALID_SIGNATURE = "InvalidSignature"

_CHUNK = 1 << 20
#: SignedUpdateFirmware firmware.signature is string[0..800] (base64).
MAX_SIGNATURE_B64 = 800


class SignatureError(Exception):
    """A failed firmware check; ``status`` is the OCPP status it maps to, ``detail`` why."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def verify_signing_certificate(
    cert_pem: str, roots: Sequence[x509.Certificate], now: datetime
) -> None:
    """Raise SignatureError("InvalidCertificate") unless the signing certificate is trusted.

    ``cert_pem`` is firmware.signingCertificate: the signing certificate first,
    optionally followed by intermediate CA certificates. It must be valid at
    ``now`` and chain (through those intermediates, each a valid CA) to one of
    ``roots``, the installed ManufacturerRootCertificates.
    """
    try:
        certs = load_pem_certificates(cert_pem)
    except CertificateError as exc:
        raise SignatureError(INVALID_CERTIFICATE, str(exc)) from None
    if not roots:
        raise SignatureError(INVALID_CERTIFICATE, "no ManufacturerRootCertificate installed")
    try:
        verify_chain(certs[0], certs[1:], roots, utc(now))
    except CertificateError as exc:
        raise SignatureError(INVALID_CERTIFICATE, str(exc)) from None


def _decode_signature(signature_b64: str) -> bytes:
    if not isinstance(signature_b64, str) or len(signature_b64) > MAX_SIGNATURE_B64 * 2:
        raise SignatureError(INVALID_SIGNATURE, "signature is not a base64 string")
    compact = "".join(signature_b64.split())  # tolerate line breaks
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(INVALID_SIGNATURE, "signature is not valid base64") from None
    if not raw:
        raise SignatureError(INVALID_SIGNATURE, "empty signature")
    return raw


def _file_sha256(path: Path) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.finalize()


def verify_file_signature(path: Path, signature_b64: str, cert_pem: str) -> None:
    """Raise SignatureError("InvalidSignature") unless ``signature_b64`` signs the file at ``path``.

    The public key is that of the first certificate of ``cert_pem`` (the
    signing certificate); check that certificate first with
    `verify_signing_certificate`. The file is hashed in 1 MiB chunks (SHA-256).
    An unreadable file raises OSError (it is not a signature verdict).
    """
    signature = _decode_signature(signature_b64)
    try:
        public_key = load_pem_certificates(cert_pem)[0].public_key()
    except (CertificateError, ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(INVALID_SIGNATURE, f"no usable signing key: {exc}") from None
    digest = _file_sha256(Path(path))
    prehashed = Prehashed(hashes.SHA256())
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            try:
                public_key.verify(signature, digest, padding.PKCS1v15(), prehashed)
            except InvalidSignature:
                public_key.verify(
                    signature,
                    digest,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                    prehashed,
                )
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, digest, ec.ECDSA(prehashed))
        else:
            raise SignatureError(
                INVALID_SIGNATURE, f"unsupported signing key type {type(public_key).__name__}"
            )
    except InvalidSignature:
        raise SignatureError(INVALID_SIGNATURE, "signature does not match the file") from None
