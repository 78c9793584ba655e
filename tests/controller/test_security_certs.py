"""Tests of the charge point certificate store (controller.security.certs).

Requirements covered: R-SEC 3 (SignCertificate with a key pair generated on
the charger; CertificateSigned validated: chain, key match,
CertificateSignedMaxChainSize; InstallCertificate / DeleteCertificate /
GetInstalledCertificateIds with CertificateStoreMaxLength), R-SEC 5 (private
keys readable by the service user alone, in no other file).

Every certificate is made here with cryptography (roots, intermediates, leaves,
expired ones, another CA); the expected certificateHashData is computed
independently of the code under test (hashlib over the DER pieces).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from controller.security import certs as certs_mod
from controller.security.certs import (
    CENTRAL_SYSTEM_ROOT,
    MANUFACTURER_ROOT,
    STORE_FULL_STATUS,
    CertificateStore,
)

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


# --------------------------------------------------------------------------- a small PKI


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def name(cn: str, org: str = "Test PKI") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_cert(
    subject: str,
    public_key,
    issuer: x509.Certificate | None,
    issuer_key,
    *,
    ca: bool,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
    key_usage: bool = True,
) -> x509.Certificate:
    subject_name = name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer.subject if issuer is not None else subject_name)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_root(cn: str = "CSMS Root CA", key=None, **kw):
    key = key or ec_key()
    return make_cert(cn, key.public_key(), None, key, ca=True, **kw), key


def make_intermediate(root, root_key, cn: str = "CSMS Sub CA", **kw):
    key = ec_key()
    return make_cert(cn, key.public_key(), root, root_key, ca=True, **kw), key


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def expected_hash_data(cert: x509.Certificate, algorithm: str = "SHA256") -> dict:
    """certificateHashData of a self-signed root, computed without the code under test."""
    h = {"SHA256": hashlib.sha256, "SHA384": hashlib.sha384, "SHA512": hashlib.sha512}[algorithm]
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):  # BIT STRING content = RSAPublicKey DER
        key_bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    else:  # EC: BIT STRING content = the (uncompressed) point
        key_bits = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": h(cert.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": h(key_bits).hexdigest(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def store(tmp_path: Path) -> CertificateStore:
    return CertificateStore(tmp_path / "certs", max_entries=5, max_chain=10000)


@pytest.fixture
def csms_pki():
    root, root_key = make_root()
    sub, sub_key = make_intermediate(root, root_key)
    return root, root_key, sub, sub_key


def sign_csr(csr_pem: str, issuer: x509.Certificate, issuer_key, **kw) -> x509.Certificate:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return make_cert("ignored", csr.public_key(), issuer, issuer_key, ca=False, **kw)


# --------------------------------------------------------------------------- files


def test_r_sec_5_store_directory_0700_and_files_0600(store, csms_pki, tmp_path):
    root, _, sub, sub_key = csms_pki
    d = tmp_path / "certs"
    assert mode(d) == 0o700
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(root)) == "Accepted"
    csr = store.make_csr("CP-0001", "Example CPO")
    assert store.accept_signed(pem(sign_csr(csr, sub, sub_key), sub)) == "Accepted"
    files = list(d.iterdir())
    assert len(files) == 3  # roots bundle, key, chain; no temporary file left
    for f in files:
        assert mode(f) == 0o600, f.name


def test_r_sec_5_existing_directory_is_tightened_to_0700(tmp_path):
    d = tmp_path / "certs"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    CertificateStore(d, max_entries=1, max_chain=100)
    assert mode(d) == 0o700


# --------------------------------------------------------------------------- InstallCertificate / GetInstalledCertificateIds


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_r_sec_3_install_then_get_installed_ids_with_hash_data(store, kind):
    key = ec_key() if kind == "ec" else rsa_key()
    root, _ = make_root(key=key, serial=0x0ABCDEF)  # a leading zero nibble
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(root)) == "Accepted"
    ids = store.installed_ids(CENTRAL_SYSTEM_ROOT)
    assert ids == [expected_hash_data(root)]
    assert ids[0]["serialNumber"] == "abcdef"
    assert store.installed_ids(MANUFACTURER_ROOT) == []
    assert store.has_central_root()


def test_r_sec_3_install_same_certificate_twice_no_duplicate(store):
    root, _ = make_root()
    assert store.install(MANUFACTURER_ROOT, pem(root)) == "Accepted"
    assert store.install(MANUFACTURER_ROOT, pem(root)) == "Accepted"
    assert store.installed_ids(MANUFACTURER_ROOT) == [expected_hash_data(root)]


def test_r_sec_3_roots_are_kept_by_type(store):
    csms, _ = make_root("CSMS root")
    manu, _ = make_root("Manufacturer root")
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(csms)) == "Accepted"
    assert store.install(MANUFACTURER_ROOT, pem(manu)) == "Accepted"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [csms]
    assert store.roots(MANUFACTURER_ROOT) == [manu]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "truncated",  # replaced below by a cut PEM
        "two",  # replaced below by two certificates
    ],
)
def test_r_sec_3_install_malformed_pem_rejected_nothing_stored(store, tmp_path, text):
    root, _ = make_root()
    if text == "truncated":
        text = pem(root)[:200]
    elif text == "two":
        other, _ = make_root("Other root")
        text = pem(root, other)
    before = snapshot(tmp_path / "certs")
    assert store.install(CENTRAL_SYSTEM_ROOT, text) == "Rejected"
    assert store.last_reason
    assert snapshot(tmp_path / "certs") == before
    assert store.root_bundle_path(CENTRAL_SYSTEM_ROOT) is None


def test_r_sec_3_install_invalid_certificates_rejected(store):
    root, root_key = make_root()
    leaf_key = ec_key()
    leaf = make_cert("leaf", leaf_key.public_key(), root, root_key, ca=False)
    self_signed_non_ca = make_cert("x", leaf_key.public_key(), None, leaf_key, ca=False)
    intermediate, _ = make_intermediate(root, root_key)
    expired, _ = make_root(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    future, _ = make_root(not_before=NOW + 10 * DAY, not_after=NOW + 20 * DAY)
    no_cert_sign, _ = make_root(key_usage=False)
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak, _ = make_root(key=weak_key)
    for cert in (leaf, self_signed_non_ca, intermediate, expired, future, weak):
        assert store.install(CENTRAL_SYSTEM_ROOT, pem(cert)) == "Rejected", cert.subject
    # a root without keyUsage is fine (RFC 5280 leaves it optional)
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(no_cert_sign)) == "Accepted"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [no_cert_sign]


def test_r_sec_3_install_unknown_certificate_type_rejected(store, tmp_path):
    root, _ = make_root()
    before = snapshot(tmp_path / "certs")
    assert store.install("V2GRootCertificate", pem(root)) == "Rejected"
    assert snapshot(tmp_path / "certs") == before


def test_r_sec_3_certificate_store_max_length(tmp_path):
    store = CertificateStore(tmp_path / "certs", max_entries=2, max_chain=10000)
    a, _ = make_root("A")
    b, _ = make_root("B")
    c, _ = make_root("C")
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(a)) == "Accepted"
    assert store.install(MANUFACTURER_ROOT, pem(b)) == "Accepted"  # the limit counts all types
    before = snapshot(tmp_path / "certs")
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(c)) == STORE_FULL_STATUS == "Rejected"
    assert "CertificateStoreMaxLength" in store.last_reason
    assert snapshot(tmp_path / "certs") == before
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(a)) == "Accepted"  # already there
    assert len(store.roots(CENTRAL_SYSTEM_ROOT)) == 1


def test_r_sec_3_write_failure_is_failed(store, monkeypatch):
    root, _ = make_root()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store, "_write_atomic", boom)
    assert store.install(CENTRAL_SYSTEM_ROOT, pem(root)) == "Failed"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == []


def test_r_sec_2_root_bundle_loads_into_ssl_context(store):
    a, _ = make_root("A", key=rsa_key())
    b, _ = make_root("B")
    assert store.root_bundle_path(CENTRAL_SYSTEM_ROOT) is None
    store.install(CENTRAL_SYSTEM_ROOT, pem(a))
    store.install(CENTRAL_SYSTEM_ROOT, pem(b))
    path = store.root_bundle_path(CENTRAL_SYSTEM_ROOT)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(path))
    assert ctx.cert_store_stats()["x509_ca"] == 2


# --------------------------------------------------------------------------- DeleteCertificate


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_r_sec_3_delete_by_hash_data_round_trip(store, algorithm):
    a, _ = make_root("A")
    b, _ = make_root("B", key=rsa_key())
    store.install(CENTRAL_SYSTEM_ROOT, pem(a))
    store.install(CENTRAL_SYSTEM_ROOT, pem(b))
    listed = store.installed_ids(CENTRAL_SYSTEM_ROOT, algorithm)
    assert listed == [expected_hash_data(a, algorithm), expected_hash_data(b, algorithm)]
    assert store.delete(expected_hash_data(b, algorithm)) == "Accepted"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [a]
    assert store.delete(expected_hash_data(b, algorithm)) == "NotFound"


def test_r_sec_3_delete_tolerates_case_and_leading_zeros(store):
    root, _ = make_root(serial=0x1F)
    store.install(MANUFACTURER_ROOT, pem(root))
    data = expected_hash_data(root)
    data = {
        **data,
        "issuerNameHash": data["issuerNameHash"].upper(),
        "issuerKeyHash": data["issuerKeyHash"].upper(),
        "serialNumber": "001F",
    }
    assert store.delete(data) == "Accepted"
    assert store.root_bundle_path(MANUFACTURER_ROOT) is None


@pytest.mark.parametrize(
    "field", ["issuerNameHash", "issuerKeyHash", "serialNumber", "hashAlgorithm"]
)
def test_r_sec_3_delete_needs_all_four_fields_to_match(store, field):
    root, _ = make_root()
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    data = expected_hash_data(root)
    data[field] = {"hashAlgorithm": "SHA384", "serialNumber": "1234"}.get(field, "00" * 32)
    assert store.delete(data) == "NotFound"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [root]


def test_r_sec_3_delete_last_central_root_refused_when_protected(store):
    a, _ = make_root("A")
    store.install(CENTRAL_SYSTEM_ROOT, pem(a))
    assert store.delete(expected_hash_data(a), protect_last_central_root=True) == "Failed"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [a]
    b, _ = make_root("B")
    store.install(CENTRAL_SYSTEM_ROOT, pem(b))
    assert store.delete(expected_hash_data(a), protect_last_central_root=True) == "Accepted"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [b]
    assert store.delete(expected_hash_data(b), protect_last_central_root=False) == "Accepted"
    assert not store.has_central_root()


def test_r_sec_3_delete_last_manufacturer_root_allowed_even_when_protected(store):
    m, _ = make_root("M")
    store.install(MANUFACTURER_ROOT, pem(m))
    assert store.delete(expected_hash_data(m), protect_last_central_root=True) == "Accepted"


def test_r_sec_3_charge_point_certificate_cannot_be_deleted(store, csms_pki):
    root, _, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    leaf = sign_csr(store.make_csr("CP-1", "CPO"), sub, sub_key)
    assert store.accept_signed(pem(leaf, sub)) == "Accepted"
    h = hashlib.sha256
    data = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": h(sub.subject.public_bytes()).hexdigest(),
        "issuerKeyHash": h(
            sub.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        ).hexdigest(),
        "serialNumber": format(leaf.serial_number, "x"),
    }
    assert store.delete(data) == "Failed"
    assert store.has_client_certificate()


# --------------------------------------------------------------------------- SignCertificate


def test_r_sec_3_csr_has_our_key_and_subject(store):
    csr_pem = store.make_csr("CP-0001", "Example CPO", country="NL", serial_number_attr="SN-42")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    key = store.ensure_key()
    assert isinstance(key.curve, ec.SECP256R1)
    assert csr.public_key() == key.public_key()
    attrs = {a.oid: a.value for a in csr.subject}
    assert attrs[NameOID.COMMON_NAME] == "CP-0001"
    assert attrs[NameOID.ORGANIZATION_NAME] == "Example CPO"
    assert attrs[NameOID.COUNTRY_NAME] == "NL"
    assert attrs[NameOID.SERIAL_NUMBER] == "SN-42"
    assert "PRIVATE KEY" not in csr_pem


def test_r_sec_3_csr_retries_reuse_the_pending_key(store):
    a = x509.load_pem_x509_csr(store.make_csr("CP", "CPO").encode())
    b = x509.load_pem_x509_csr(store.make_csr("CP", "CPO").encode())
    assert a.public_key() == b.public_key()


def test_r_sec_3_renewal_uses_a_new_key_and_keeps_the_old_until_accepted(store, csms_pki):
    root, _, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    first = sign_csr(store.make_csr("CP", "CPO"), sub, sub_key)
    assert store.accept_signed(pem(first, sub)) == "Accepted"
    chain_path, key_path_1 = store.client_cert_paths()
    # renewal (A02/A03): a fresh key pair; the installed certificate keeps its key meanwhile
    csr2 = x509.load_pem_x509_csr(store.make_csr("CP", "CPO").encode())
    assert csr2.public_key() != first.public_key()
    assert store.client_cert_paths() == (chain_path, key_path_1)
    assert key_path_1.exists()
    second = sign_csr(csr2.public_bytes(serialization.Encoding.PEM).decode(), sub, sub_key)
    assert store.accept_signed(pem(second, sub)) == "Accepted"
    chain_path_2, key_path_2 = store.client_cert_paths()
    assert chain_path_2 == chain_path
    assert key_path_2 != key_path_1 and not key_path_1.exists()
    assert store.client_certificate() == second


def test_r_sec_3_reissue_for_the_current_key_keeps_the_pending_key(store, csms_pki):
    root, _, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    first = sign_csr(store.make_csr("CP", "CPO"), sub, sub_key)
    assert store.accept_signed(pem(first, sub)) == "Accepted"
    csr2 = store.make_csr("CP", "CPO")  # renewal outstanding
    reissued = make_cert("CP", first.public_key(), sub, sub_key, ca=False)
    assert store.accept_signed(pem(reissued, sub)) == "Accepted"
    assert store.client_certificate() == reissued
    second = sign_csr(csr2, sub, sub_key)  # the late answer to the renewal still matches
    assert store.accept_signed(pem(second, sub)) == "Accepted"
    assert len(list(store.directory.glob("cp-*.key"))) == 1


# --------------------------------------------------------------------------- CertificateSigned


def test_r_sec_3_certificate_signed_valid_chain_accepted_and_stored(store, csms_pki, tmp_path):
    root, _, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    assert not store.has_client_certificate()
    assert store.client_cert_paths() is None
    leaf = sign_csr(store.make_csr("CP-0001", "Example CPO"), sub, sub_key)
    assert store.accept_signed(pem(leaf, sub)) == "Accepted"
    assert store.last_reason is None
    assert store.has_client_certificate()
    chain_path, key_path = store.client_cert_paths()
    assert mode(chain_path) == 0o600 and mode(key_path) == 0o600
    assert x509.load_pem_x509_certificates(chain_path.read_bytes()) == [leaf, sub]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(str(chain_path), str(key_path))  # the pair matches


def test_r_sec_3_certificate_signed_directly_by_root_or_with_root_included(store, csms_pki):
    root, root_key, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    leaf = sign_csr(store.make_csr("CP", "CPO"), root, root_key)
    assert store.accept_signed(pem(leaf)) == "Accepted"
    leaf2 = sign_csr(store.make_csr("CP", "CPO"), sub, sub_key)
    assert store.accept_signed(pem(leaf2, sub, root)) == "Accepted"
    chain_path, _ = store.client_cert_paths()
    assert x509.load_pem_x509_certificates(chain_path.read_bytes()) == [leaf2, sub]


def _assert_rejected_nothing_stored(store, chain_pem, directory, reason_part):
    before = snapshot(directory)
    assert store.accept_signed(chain_pem) == "Rejected"
    assert reason_part in store.last_reason
    assert snapshot(directory) == before


def test_r_sec_3_certificate_signed_must_match_our_key(store, csms_pki, tmp_path):
    root, _, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    store.make_csr("CP", "CPO")
    stranger = ec_key()
    leaf = make_cert("CP", stranger.public_key(), sub, sub_key, ca=False)
    _assert_rejected_nothing_stored(store, pem(leaf, sub), tmp_path / "certs", "not ours")
    assert not store.has_client_certificate()


def test_r_sec_3_certificate_signed_by_another_ca_rejected(store, csms_pki, tmp_path):
    root, _, _, _ = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    other_root, other_key = make_root("Other CA")
    other_sub, other_sub_key = make_intermediate(other_root, other_key, "Other Sub")
    leaf = sign_csr(store.make_csr("CP", "CPO"), other_sub, other_sub_key)
    _assert_rejected_nothing_stored(
        store, pem(leaf, other_sub, other_root), tmp_path / "certs", "does not verify"
    )


def test_r_sec_3_certificate_signed_without_any_central_root_rejected(store, csms_pki, tmp_path):
    _, _, sub, sub_key = csms_pki
    leaf = sign_csr(store.make_csr("CP", "CPO"), sub, sub_key)
    _assert_rejected_nothing_stored(store, pem(leaf, sub), tmp_path / "certs", "no trusted root")


def test_r_sec_3_certificate_signed_over_max_chain_size_rejected(tmp_path, csms_pki):
    root, _, sub, sub_key = csms_pki
    probe = CertificateStore(tmp_path / "certs", max_entries=5, max_chain=10000)
    probe.install(CENTRAL_SYSTEM_ROOT, pem(root))
    chain = pem(sign_csr(probe.make_csr("CP", "CPO"), sub, sub_key), sub)
    size = len(chain.encode())
    small = CertificateStore(tmp_path / "certs", max_entries=5, max_chain=size - 1)
    _assert_rejected_nothing_stored(
        small, chain, tmp_path / "certs", "CertificateSignedMaxChainSize"
    )
    exact = CertificateStore(tmp_path / "certs", max_entries=5, max_chain=size)
    assert exact.accept_signed(chain) == "Accepted"


def test_r_sec_3_certificate_signed_expired_or_not_yet_valid_rejected(store, csms_pki, tmp_path):
    root, root_key, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    csr = store.make_csr("CP", "CPO")
    expired = sign_csr(csr, sub, sub_key, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    _assert_rejected_nothing_stored(store, pem(expired, sub), tmp_path / "certs", "expired")
    future = sign_csr(csr, sub, sub_key, not_before=NOW + DAY, not_after=NOW + 10 * DAY)
    _assert_rejected_nothing_stored(store, pem(future, sub), tmp_path / "certs", "not valid before")
    old_sub, old_sub_key = make_intermediate(
        root, root_key, "Old Sub", not_before=NOW - 10 * DAY, not_after=NOW - DAY
    )
    through_expired = sign_csr(csr, old_sub, old_sub_key)
    _assert_rejected_nothing_stored(
        store, pem(through_expired, old_sub), tmp_path / "certs", "does not verify"
    )


def test_r_sec_3_certificate_signed_a_moment_ahead_is_accepted(store, csms_pki):
    root, _, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    leaf = sign_csr(
        store.make_csr("CP", "CPO"),
        sub,
        sub_key,
        not_before=datetime.now(UTC) + timedelta(seconds=30),
    )
    assert store.accept_signed(pem(leaf, sub)) == "Accepted"


@pytest.mark.parametrize(
    "text", ["", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]
)
def test_r_sec_3_certificate_signed_malformed_rejected(store, csms_pki, tmp_path, text):
    root, _, _, _ = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    store.make_csr("CP", "CPO")
    _assert_rejected_nothing_stored(store, text, tmp_path / "certs", "")


def test_r_sec_3_certificate_signed_ca_leaf_with_our_key_must_still_chain(
    store, csms_pki, tmp_path
):
    """A self-signed certificate over our own key is not a chain to an installed root."""
    root, _, _, _ = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    key = store.ensure_key()
    self_signed = make_cert("CP", key.public_key(), None, key, ca=False)
    _assert_rejected_nothing_stored(store, pem(self_signed), tmp_path / "certs", "does not verify")


def test_r_sec_5_private_key_in_no_other_file(store, csms_pki, tmp_path):
    root, _, sub, sub_key = csms_pki
    store.install(CENTRAL_SYSTEM_ROOT, pem(root))
    manu, _ = make_root("Manufacturer")
    store.install(MANUFACTURER_ROOT, pem(manu))
    csr = store.make_csr("CP", "CPO")
    store.accept_signed(pem(sign_csr(csr, sub, sub_key), sub))
    assert store.has_client_certificate()
    key = store.ensure_key()  # a pending key for a renewal, too
    keys = [
        serialization.load_pem_private_key(p.read_bytes(), None)
        for p in (tmp_path / "certs").glob("cp-*.key")
    ]
    assert len(keys) == 2 and key.public_key() in [k.public_key() for k in keys]
    secrets = []
    for k in keys:
        scalar = k.private_numbers().private_value.to_bytes(32, "big")
        der = k.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem_body = b"".join(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).splitlines()[1:-1]
        )
        secrets += [scalar, scalar.hex().encode(), der, pem_body]
    for path in (tmp_path / "certs").iterdir():
        if path.name.startswith("cp-") and path.name.endswith(".key"):
            assert mode(path) == 0o600
            continue
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, path.name
        for secret in secrets:
            assert secret not in data, path.name
    assert b"PRIVATE KEY" not in csr.encode()


def test_store_reopened_sees_the_same_state(tmp_path, csms_pki):
    root, _, sub, sub_key = csms_pki
    s1 = CertificateStore(tmp_path / "certs", max_entries=5, max_chain=10000)
    s1.install(CENTRAL_SYSTEM_ROOT, pem(root))
    s1.accept_signed(pem(sign_csr(s1.make_csr("CP", "CPO"), sub, sub_key), sub))
    s2 = CertificateStore(tmp_path / "certs", max_entries=5, max_chain=10000)
    assert s2.installed_ids(CENTRAL_SYSTEM_ROOT) == [expected_hash_data(root)]
    assert s2.client_cert_paths() == s1.client_cert_paths()


def test_hash_data_helper_rejects_unknown_algorithm(csms_pki):
    root = csms_pki[0]
    with pytest.raises(ValueError):
        certs_mod.certificate_hash_data(root, root, "SHA1")
