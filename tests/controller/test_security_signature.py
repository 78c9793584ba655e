"""Tests of the SignedUpdateFirmware checks (controller.security.signature).

Requirement covered: R-FW 2 (signing certificate checked against an installed
ManufacturerRootCertificate -> InvalidCertificate; signature checked over the
file -> InvalidSignature). Certificates and signatures are made here with
cryptography, as ``openssl dgst -sha256 -sign`` would make them.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.security.certs import MANUFACTURER_ROOT, CertificateStore
from controller.security.signature import (
    SignatureError,
    verify_file_signature,
    verify_signing_certificate,
)

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def make_cert(cn, public_key, issuer, issuer_key, *, ca, not_before=None, not_after=None):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certs):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


class Pki:
    """A manufacturer root, an intermediate, and RSA and ECDSA signing certificates."""

    def __init__(self, name="Manufacturer"):
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = make_cert(
            f"{name} Root", self.root_key.public_key(), None, self.root_key, ca=True
        )
        self.sub_key = ec.generate_private_key(ec.SECP256R1())
        self.sub = make_cert(
            f"{name} Sub", self.sub_key.public_key(), self.root, self.root_key, ca=True
        )
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_cert = make_cert(
            f"{name} RSA signer", self.rsa_key.public_key(), self.root, self.root_key, ca=False
        )
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.ec_cert = make_cert(
            f"{name} EC signer", self.ec_key.public_key(), self.sub, self.sub_key, ca=False
        )


@pytest.fixture(scope="module")
def pki():
    return Pki()


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "evsectl-9.9.9-py3-none-any.whl"
    path.write_bytes(os.urandom(3 * (1 << 20) + 123))  # over several read chunks
    return path


def sign_rsa(key, data: bytes, *, pss: bool = False) -> str:
    pad = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        if pss
        else padding.PKCS1v15()
    )
    return base64.b64encode(key.sign(data, pad, hashes.SHA256())).decode()


def sign_ec(key, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


# --------------------------------------------------------------------------- signing certificate


def test_r_fw_2_signing_certificate_from_installed_root_is_valid(pki):
    verify_signing_certificate(pem(pki.rsa_cert), [pki.root], NOW)
    # through an intermediate included in the PEM
    verify_signing_certificate(pem(pki.ec_cert, pki.sub), [pki.root], NOW)


def test_r_fw_2_signing_certificate_with_roots_from_the_store(pki, tmp_path):
    store = CertificateStore(tmp_path / "certs", max_entries=3, max_chain=10000)
    assert store.install(MANUFACTURER_ROOT, pem(pki.root)) == "Accepted"
    verify_signing_certificate(pem(pki.ec_cert, pki.sub), store.roots(MANUFACTURER_ROOT), NOW)


def test_r_fw_2_signing_certificate_from_another_root_is_invalid_certificate(pki):
    other = Pki("Other")
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(other.rsa_cert), [pki.root], NOW)
    assert err.value.status == "InvalidCertificate"
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(other.ec_cert, other.sub), [pki.root], NOW)
    assert err.value.status == "InvalidCertificate"


def test_r_fw_2_missing_intermediate_is_invalid_certificate(pki):
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(pki.ec_cert), [pki.root], NOW)
    assert err.value.status == "InvalidCertificate"


def test_r_fw_2_expired_signing_certificate_is_invalid_certificate(pki):
    expired = make_cert(
        "old signer",
        pki.rsa_key.public_key(),
        pki.root,
        pki.root_key,
        ca=False,
        not_before=NOW - 30 * DAY,
        not_after=NOW - DAY,
    )
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(expired), [pki.root], NOW)
    assert err.value.status == "InvalidCertificate"
    # and a valid certificate checked at a time after its expiry
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(pki.rsa_cert), [pki.root], NOW + 400 * DAY)
    assert err.value.status == "InvalidCertificate"


def test_r_fw_2_not_yet_valid_signing_certificate_is_invalid_certificate(pki):
    future = make_cert(
        "future signer",
        pki.rsa_key.public_key(),
        pki.root,
        pki.root_key,
        ca=False,
        not_before=NOW + DAY,
        not_after=NOW + 30 * DAY,
    )
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(future), [pki.root], NOW)
    assert err.value.status == "InvalidCertificate"


def test_r_fw_2_intermediate_that_is_not_a_ca_is_invalid_certificate(pki):
    fake_sub_key = ec.generate_private_key(ec.SECP256R1())
    fake_sub = make_cert("not a CA", fake_sub_key.public_key(), pki.root, pki.root_key, ca=False)
    signer = make_cert("signer", pki.ec_key.public_key(), fake_sub, fake_sub_key, ca=False)
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(signer, fake_sub), [pki.root], NOW)
    assert err.value.status == "InvalidCertificate"


@pytest.mark.parametrize(
    "text", ["", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]
)
def test_r_fw_2_malformed_signing_certificate_is_invalid_certificate(pki, text):
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(text, [pki.root], NOW)
    assert err.value.status == "InvalidCertificate"


def test_r_fw_2_no_manufacturer_root_installed_is_invalid_certificate(pki):
    with pytest.raises(SignatureError) as err:
        verify_signing_certificate(pem(pki.rsa_cert), [], NOW)
    assert err.value.status == "InvalidCertificate"
    assert "ManufacturerRootCertificate" in err.value.detail


# --------------------------------------------------------------------------- file signature


def test_r_fw_2_valid_rsa_pkcs1v15_signature(pki, firmware):
    sig = sign_rsa(pki.rsa_key, firmware.read_bytes())
    verify_file_signature(firmware, sig, pem(pki.rsa_cert))


def test_r_fw_2_valid_rsa_pss_signature(pki, firmware):
    sig = sign_rsa(pki.rsa_key, firmware.read_bytes(), pss=True)
    verify_file_signature(firmware, sig, pem(pki.rsa_cert))


def test_r_fw_2_valid_ecdsa_signature(pki, firmware):
    sig = sign_ec(pki.ec_key, firmware.read_bytes())
    verify_file_signature(firmware, sig, pem(pki.ec_cert, pki.sub))


def test_r_fw_2_signature_with_line_breaks_accepted(pki, firmware):
    sig = sign_rsa(pki.rsa_key, firmware.read_bytes())
    wrapped = "\n".join(sig[i : i + 64] for i in range(0, len(sig), 64))
    verify_file_signature(firmware, wrapped, pem(pki.rsa_cert))


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_r_fw_2_tampered_file_is_invalid_signature(pki, firmware, kind):
    data = firmware.read_bytes()
    if kind == "rsa":
        sig, cert_pem = sign_rsa(pki.rsa_key, data), pem(pki.rsa_cert)
    else:
        sig, cert_pem = sign_ec(pki.ec_key, data), pem(pki.ec_cert, pki.sub)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    firmware.write_bytes(bytes(tampered))
    with pytest.raises(SignatureError) as err:
        verify_file_signature(firmware, sig, cert_pem)
    assert err.value.status == "InvalidSignature"


def test_r_fw_2_signature_by_another_key_is_invalid_signature(pki, firmware):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sig = sign_rsa(other, firmware.read_bytes())
    with pytest.raises(SignatureError) as err:
        verify_file_signature(firmware, sig, pem(pki.rsa_cert))
    assert err.value.status == "InvalidSignature"


def test_r_fw_2_sha1_signature_is_invalid_signature(pki, firmware):
    raw = pki.ec_key.sign(firmware.read_bytes(), ec.ECDSA(hashes.SHA1()))
    with pytest.raises(SignatureError) as err:
        verify_file_signature(firmware, base64.b64encode(raw).decode(), pem(pki.ec_cert))
    assert err.value.status == "InvalidSignature"


@pytest.mark.parametrize("sig", ["", "not base64!", "AAAA", "=" * 4])
def test_r_fw_2_malformed_signature_is_invalid_signature(pki, firmware, sig):
    with pytest.raises(SignatureError) as err:
        verify_file_signature(firmware, sig, pem(pki.rsa_cert))
    assert err.value.status == "InvalidSignature"


def test_r_fw_2_unreadable_signing_certificate_is_invalid_signature(firmware):
    with pytest.raises(SignatureError) as err:
        verify_file_signature(firmware, "AAAA", "garbage")
    assert err.value.status == "InvalidSignature"


def test_missing_file_raises_oserror_not_a_verdict(pki, tmp_path):
    sig = sign_rsa(pki.rsa_key, b"x")
    with pytest.raises(OSError):
        verify_file_signature(tmp_path / "absent.bin", sig, pem(pki.rsa_cert))
