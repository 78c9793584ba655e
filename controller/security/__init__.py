"""Security extension (R-SEC 3, R-FW 2): certificates and signed firmware.

``certs``
    `CertificateStore`: the installed root certificates (InstallCertificate,
    DeleteCertificate, GetInstalledCertificateIds), the charge point's own key
    pair and certificate (SignCertificate / CertificateSigned), and the file
    paths the TLS layer loads (profile 2: roots; profile 3: client chain + key).
``signature``
    SignedUpdateFirmware checks: the signing certificate against the installed
    ManufacturerRootCertificates, the signature over the downloaded file.

Blocking, synchronous, stdlib + ``cryptography`` only: no asyncio, no OCPP
library (call them with ``asyncio.to_thread`` from the daemon). Importing this
package starts nothing and touches no file.
"""

from controller.security.certs import (
    CENTRAL_SYSTEM_ROOT,
    CERT_TYPES,
    MANUFACTURER_ROOT,
    CertificateError,
    CertificateStore,
)
from controller.security.signature import (
    SignatureError,
    verify_file_signature,
    verify_signing_certificate,
)

__all__ = [
    "CENTRAL_SYSTEM_ROOT",
    "CERT_TYPES",
    "MANUFACTURER_ROOT",
    "CertificateError",
    "CertificateStore",
    "SignatureError",
    "verify_file_signature",
    "verify_signing_certificate",
]
