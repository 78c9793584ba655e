"""R-SEC over the wire: security profiles 0-3, TLS and Basic-auth faults and their security
events, upgrade / downgrade / fallback, and the certificate operations.

The real daemon against our CSMS on 127.0.0.1, ``wss://`` with certificates made by the
tests (``tls_material``). OCA test case ids (OCPP 1.6 security, TC_073-TC_087, the
charge-point side) are in the test names where one applies.

Provisioning is done over OCPP (InstallCertificate, ChangeConfiguration) except where a
test needs the charger to *start* on profile 2: there the CentralSystemRootCertificate is
put into ``<state>/certs/`` before the first start, as a factory would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from daemon_harness import Daemon
from tls_material import Ca, make_ca, pem_of, server_context

from controller.csms import CentralSystem

BOX = "CP-TEST"
#: TC_073's AuthorizationKey: "OCA_OCTT_admin_test" hex-encoded (19 bytes)
KEY = "4F43415F4F4354545F61646D696E5F74657374"
KEY2 = "00112233445566778899AABBCCDDEEFF01234567"  # 20 bytes
CS_ROOT = "CentralSystemRootCertificate"
MFR = "ManufacturerRootCertificate"


# ---------------------------------------------------------------- material


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = make_ca("evsectl test CSMS root")
    rogue = make_ca("rogue root")
    return SimpleNamespace(
        root=root,
        rogue=rogue,
        manufacturer=make_ca("evsectl test manufacturer root"),
        server=root.issue_server(),
        rogue_server=rogue.issue_server(),
        expired_server=root.issue_server(expired=True),
        wrong_host_server=root.issue_server(("csms.wrong.example",)),
        files=tmp_path_factory.mktemp("tls"),
    )


def ctx(pki: SimpleNamespace, leaf: Any = None, **options: Any) -> ssl.SSLContext:
    return server_context(leaf or pki.server, pki.files, **options)


def seed_root(d: Daemon, ca: Ca) -> None:
    """A CentralSystemRootCertificate installed before the first start (factory provisioning)."""
    certs = d.state_dir / "certs"
    certs.mkdir(parents=True, mode=0o700)
    (certs / f"{CS_ROOT}.pem").write_text(ca.pem)
    (certs / f"{CS_ROOT}.pem").chmod(0o600)


def hash_data(cert: x509.Certificate, issuer: x509.Certificate) -> dict[str, str]:
    """CertificateHashDataType computed here, independently of the charger (OCSP CertID:
    SHA-256 of the issuer's DER name and of its public key bits, serial in hex)."""
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key_bits = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hashlib.sha256(issuer.subject.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.sha256(key_bits).hexdigest(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def same_hash(a: dict[str, str], b: dict[str, str]) -> bool:
    return (
        a["hashAlgorithm"] == b["hashAlgorithm"]
        and a["issuerNameHash"].lower() == b["issuerNameHash"].lower()
        and a["issuerKeyHash"].lower() == b["issuerKeyHash"].lower()
        and int(a["serialNumber"], 16) == int(b["serialNumber"], 16)
    )


# ---------------------------------------------------------------- helpers


async def eventually(probe: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def online(d: Daemon, csms: CentralSystem) -> None:
    await csms.wait_for("BootNotification", identity=BOX, timeout=15)
    await d.until(lambda s: s["link"] == "connected", what="boot accepted")


async def change(csms: CentralSystem, key: str, value: str) -> str:
    answer = await csms.call(BOX, "ChangeConfiguration", {"key": key, "value": value})
    return str(answer["status"])


async def config_value(csms: CentralSystem, key: str) -> str | None:
    answer = await csms.call(BOX, "GetConfiguration", {"key": [key]})
    values = [k.get("value") for k in answer.get("configurationKey", []) if k["key"] == key]
    return values[0] if values else None


async def security_event(csms: CentralSystem, type_: str, since: int = 0, timeout: float = 15.0,
                         tech: str | None = None) -> dict[str, Any]:
    record = await csms.wait_for(
        "SecurityEventNotification", identity=BOX, since=since, timeout=timeout,
        predicate=lambda r: r.payload.get("type") == type_ and (tech is None or tech in r.payload.get("techInfo", "")),
    )
    return record.payload


def security_log(d: Daemon) -> str:
    path = d.state_dir / "logs" / "security.log"
    return path.read_text() if path.exists() else ""


def accepted_handshakes(csms: CentralSystem) -> list[Any]:
    return [h for h in csms.handshakes(BOX) if h.status == 101]


async def sign_certificate(csms: CentralSystem, ca: Ca, since: int = 0) -> tuple[x509.CertificateSigningRequest, x509.Certificate]:
    """ExtendedTriggerMessage SignChargePointCertificate; the charger's CSR, signed by ``ca``."""
    answer = await csms.call(BOX, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
    assert answer == {"status": "Accepted"}
    request = await csms.wait_for("SignCertificate", identity=BOX, since=since)
    csr_pem = request.payload["csr"]
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return csr, ca.sign_csr(csr_pem)


def certs_dir_state(d: Daemon) -> dict[str, bytes]:
    certs = d.state_dir / "certs"
    return {p.name: p.read_bytes() for p in sorted(certs.iterdir())} if certs.exists() else {}


# ---------------------------------------------------------------- each profile connects


@pytest.mark.parametrize("profile", [0, 1, 2, "2-tls1.2"], ids=[
    "profile0_ws", "profile1_ws_basic_TC_085", "profile2_wss_basic_TC_086", "profile2_tls1.2_only_server"])
async def test_r_sec_1_2_each_profile_connects(profile, pki, make_daemon) -> None:
    tls12 = profile == "2-tls1.2"
    profile = 2 if tls12 else profile
    tls = ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2 if tls12 else None) if profile == 2 else None
    async with CentralSystem(ssl_context=tls, basic_auth_password=KEY if profile else None) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": profile, "AuthorizationKey": KEY})
        if profile == 2:
            seed_root(d, pki.root)
        await d.start()
        await online(d, csms)
        (handshake,) = accepted_handshakes(csms)
        if profile == 0:
            assert handshake.basic_auth_user is None and handshake.tls is None
        elif profile == 1:
            assert handshake.basic_auth_user == BOX and handshake.tls is None
        else:
            assert csms.url.startswith("wss://")
            assert handshake.basic_auth_user == BOX
            assert handshake.tls is not None
            assert handshake.tls.version == ("TLSv1.2" if tls12 else "TLSv1.3"), handshake.tls
            assert handshake.tls.client_certificate is None
        assert await config_value(csms, "SecurityProfile") == str(profile)
        csms.assert_clean(BOX)


# ---------------------------------------------------------------- each fault is refused and reported


FAULTS: dict[str, tuple[str, str]] = {
    # fault: (what the CSMS does wrong, the security event the charger must raise)
    "wrong_ca_TC_078": ("server certificate from a CA that is not installed", "InvalidCentralSystemCertificate"),
    "expired_server_certificate": ("expired server certificate", "InvalidCentralSystemCertificate"),
    "wrong_host_name": ("server certificate for another host name", "InvalidCentralSystemCertificate"),
    "tls_1_1_only_server": ("TLS 1.1 only", "InvalidTLSVersion"),
    "weak_cipher_only_server": ("TLS 1.2 with only a CBC-SHA1 cipher suite", "InvalidTLSCipherSuite"),
    "wrong_basic_password_401": ("answers 401 to our password", "FailedToAuthenticateAtCentralSystem"),
    "client_certificate_required": ("asks for a client certificate we do not have", "FailedToAuthenticateAtCentralSystem"),
}


def bad_server(fault: str, pki: SimpleNamespace) -> tuple[ssl.SSLContext, str]:
    if fault.startswith("wrong_ca"):
        return ctx(pki, pki.rogue_server), KEY
    if fault == "expired_server_certificate":
        return ctx(pki, pki.expired_server), KEY
    if fault == "wrong_host_name":
        return ctx(pki, pki.wrong_host_server), KEY
    if fault == "tls_1_1_only_server":
        try:
            return ctx(pki, minimum_version=ssl.TLSVersion.TLSv1_1, maximum_version=ssl.TLSVersion.TLSv1_1,
                       ciphers="DEFAULT:@SECLEVEL=0"), KEY
        except (ssl.SSLError, ValueError) as e:
            pytest.skip(f"this OpenSSL cannot make a TLS 1.1-only server: {e}")
    if fault == "weak_cipher_only_server":
        return ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA"), KEY
    if fault == "wrong_basic_password_401":
        return ctx(pki), KEY2
    if fault == "client_certificate_required":
        return ctx(pki, client_ca=pki.root), KEY
    raise AssertionError(fault)


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_r_sec_2_fault_is_refused_and_raises_its_security_event(fault, pki, make_daemon) -> None:
    """Profile 2 against a CSMS that gets one thing wrong: no WebSocket is opened, the event is
    in the security log at once and reaches the CSMS once it is right again (TC_078 shape)."""
    what, event = FAULTS[fault]
    bad_context, password = bad_server(fault, pki)
    async with CentralSystem(ssl_context=bad_context, basic_auth_password=password) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 2, "AuthorizationKey": KEY})
        seed_root(d, pki.root)
        await d.start()

        def refusals() -> int:
            if fault.startswith("wrong_basic_password"):
                return len([h for h in csms.handshakes(BOX) if h.status == 401])
            return len(csms.tls_failures())

        await eventually(lambda: refusals() >= 2, f"two refused attempts ({what})")
        await eventually(lambda: event in security_log(d), f"{event} in security.log")
        assert accepted_handshakes(csms) == [], f"a WebSocket was opened although the CSMS {what}"
        assert not csms.calls("BootNotification")
        assert d.status()["link"] != "connected"

        csms.ssl_context = ctx(pki)  # the CSMS is fixed
        csms.basic_auth_password = KEY
        payload = await security_event(csms, event, timeout=20)
        assert payload.get("techInfo"), payload
        if fault == "tls_1_1_only_server":
            assert any("UNSUPPORTED_PROTOCOL" in e.detail or "VERSION" in e.detail.upper() for e in csms.tls_failures())
        assert await config_value(csms, "SecurityProfile") == "2"  # a fault is no reason to fall back
        csms.assert_clean(BOX)


@pytest.mark.parametrize("enabled", [True, False], ids=["events_enabled", "SecurityEventsEnabled_false"])
async def test_r_sec_1_4_profile_1_wrong_password_401_is_reported_after_a_restart(enabled, make_daemon) -> None:
    """The event is queued on disk while the charger cannot connect, survives a restart and is sent
    once a connection works; SecurityEventsEnabled false keeps it in the security log only."""
    async with CentralSystem(basic_auth_password=KEY2) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY, "SecurityEventsEnabled": enabled})
        await d.start()
        await eventually(lambda: len([h for h in csms.handshakes(BOX) if h.status == 401]) >= 2, "two 401s")
        assert {h.basic_auth_user for h in csms.handshakes(BOX)} == {BOX}
        await eventually(lambda: "FailedToAuthenticateAtCentralSystem" in security_log(d), "event in security.log")
        await d.stop()
        csms.basic_auth_password = KEY
        await d.start()
        await online(d, csms)
        if enabled:
            payload = await security_event(csms, "FailedToAuthenticateAtCentralSystem")
            assert "401" in payload["techInfo"]
        else:
            await asyncio.sleep(1.0)
            assert csms.calls("SecurityEventNotification") == []
            assert "FailedToAuthenticateAtCentralSystem" in security_log(d)


# ---------------------------------------------------------------- upgrade 1 -> 2 -> 3, no downgrade


async def test_r_sec_1_3_upgrade_1_2_3_and_no_downgrade_TC_083_TC_086_TC_087_TC_074_TC_084(pki, make_daemon) -> None:
    plain = CentralSystem(basic_auth_password=KEY)
    secure = CentralSystem(ssl_context=ctx(pki, client_ca=pki.root, client_optional=True), basic_auth_password=KEY)
    async with plain, secure:
        d = make_daemon(plain.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, plain)
        boot = plain.calls("BootNotification")[0].payload

        # 1 -> 2: the root first (TC_075_2), then the URL, then the profile
        answer = await plain.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": pki.root.pem})
        assert answer == {"status": "Accepted"}
        assert await change(plain, "SupervisionUrl", secure.url) == "RebootRequired"
        assert await change(plain, "SecurityProfile", "2") == "Accepted"
        await secure.wait_connected(BOX, timeout=15)
        on_2 = accepted_handshakes(secure)[-1]
        assert on_2.basic_auth_user == BOX and on_2.tls is not None and on_2.tls.client_certificate is None
        await security_event(secure, "ReconfigurationOfSecurityParameters", tech="SecurityProfile 2")
        assert await config_value(secure, "SecurityProfile") == "2"

        # TC_084: no way down over OCPP
        for lower in ("1", "0"):
            assert await change(secure, "SecurityProfile", lower) == "Rejected"
        # the only CentralSystemRootCertificate is in use on profile 2 (TC_076 negative)
        answer = await secure.call(BOX, "DeleteCertificate", {"certificateHashData": hash_data(pki.root.cert, pki.root.cert)})
        assert answer == {"status": "Failed"}

        # 2 -> 3 (TC_074 / TC_087): the charger's own key, a CSR, our CA signs it
        csr, cert = await sign_certificate(secure, pki.root)
        assert csr.is_signature_valid
        assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey) and csr.public_key().curve.key_size >= 224
        assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == BOX
        assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == boot["chargePointVendor"]
        assert "PRIVATE KEY" not in json.dumps(secure.calls("SignCertificate")[-1].payload)
        answer = await secure.call(BOX, "CertificateSigned", {"certificateChain": pem_of(cert)})
        assert answer == {"status": "Accepted"}
        # the charge point certificate cannot be deleted
        answer = await secure.call(BOX, "DeleteCertificate", {"certificateHashData": hash_data(cert, pki.root.cert)})
        assert answer == {"status": "Failed"}

        mark = secure.mark()
        assert await change(secure, "SecurityProfile", "3") == "Accepted"
        der = cert.public_bytes(serialization.Encoding.DER)
        await eventually(
            lambda: [h for h in accepted_handshakes(secure) if h.tls and h.tls.client_certificate == der],
            "a profile 3 connection with the signed certificate",
        )
        on_3 = [h for h in accepted_handshakes(secure) if h.tls and h.tls.client_certificate][-1]
        assert on_3.basic_auth_user is None  # profile 3 authenticates with the certificate
        await secure.wait_connected(BOX)
        await security_event(secure, "ReconfigurationOfSecurityParameters", since=mark, tech="SecurityProfile 3")
        for lower in ("2", "1", "0"):
            assert await change(secure, "SecurityProfile", lower) == "Rejected"
        assert await config_value(secure, "SecurityProfile") == "3"

        # a restart keeps profile 3 and its certificate
        await d.stop()
        before = len(accepted_handshakes(secure))
        await d.start()
        await eventually(lambda: len(accepted_handshakes(secure)) > before, "the reconnection after a restart")
        assert accepted_handshakes(secure)[-1].tls.client_certificate == der
        await online(d, secure)
        secure.assert_clean(BOX)


async def test_r_sec_2_profile_3_client_certificate_from_another_ca_refused_then_falls_back(pki, make_daemon) -> None:
    """The CSMS trusts another CA for client certificates: refused (FailedToAuthenticateAtCentralSystem);
    after three attempts the charger is back on profile 2, which worked, and says so."""
    async with CentralSystem(ssl_context=ctx(pki, client_ca=pki.root, client_optional=True),
                             basic_auth_password=KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 2, "AuthorizationKey": KEY})
        seed_root(d, pki.root)
        await d.start()
        await online(d, csms)
        _, cert = await sign_certificate(csms, pki.root)
        assert (await csms.call(BOX, "CertificateSigned", {"certificateChain": pem_of(cert)}))["status"] == "Accepted"

        csms.ssl_context = ctx(pki, client_ca=pki.rogue, client_optional=True)  # distrusts our certificate
        mark = csms.mark()
        assert await change(csms, "SecurityProfile", "3") == "Accepted"
        # profile 3 fails three times, then profile 2 (no client certificate) gets in again
        await eventually(lambda: [h for h in csms.handshakes(BOX)[1:] if h.status == 101], "back on profile 2", 20)
        assert len([e for e in csms.tls_failures(since=mark) if "CERTIFICATE_VERIFY_FAILED" in e.detail]) >= 3
        assert all(h.tls.client_certificate is None for h in accepted_handshakes(csms))
        await security_event(csms, "FailedToAuthenticateAtCentralSystem", since=mark)
        await security_event(csms, "ReconfigurationOfSecurityParameters", since=mark, tech="back to profile 2")
        assert await config_value(csms, "SecurityProfile") == "2"


# ---------------------------------------------------------------- fallback


async def test_r_sec_1_new_profile_that_cannot_connect_falls_back_after_3_attempts(pki, make_daemon) -> None:
    """Profile 1 works; profile 2 at the same (plain ws) endpoint cannot. After three failed
    attempts the charger is back on profile 1 and reports ReconfigurationOfSecurityParameters."""
    async with CentralSystem(basic_auth_password=KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, csms)
        assert (await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": pki.root.pem}))["status"] == "Accepted"
        mark = csms.mark()
        assert await change(csms, "SecurityProfile", "2") == "Accepted"
        await csms.wait_disconnected(BOX)
        started = time.monotonic()
        payload = await security_event(csms, "ReconfigurationOfSecurityParameters", since=mark, tech="back to profile 1", timeout=20)
        assert "profile 2 failed" in payload["techInfo"]
        assert time.monotonic() - started > 1.0  # not before the failed attempts
        assert await config_value(csms, "SecurityProfile") == "1"
        assert "back to profile 1" in security_log(d)


async def test_r_sec_1_fallback_after_url_and_profile_change_reaches_the_old_endpoint(pki, make_daemon) -> None:
    plain = CentralSystem(basic_auth_password=KEY)
    broken = CentralSystem(ssl_context=ctx(pki, pki.rogue_server), basic_auth_password=KEY)
    async with plain, broken:
        d = make_daemon(plain.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, plain)
        assert (await plain.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": pki.root.pem}))["status"] == "Accepted"
        assert await change(plain, "SupervisionUrl", broken.url) == "RebootRequired"
        mark = plain.mark()
        assert await change(plain, "SecurityProfile", "2") == "Accepted"
        await eventually(lambda: "back to profile 1" in security_log(d), "the fallback to profile 1")
        assert len(broken.tls_failures()) >= 3
        await plain.wait_connected(BOX, timeout=5)  # fails: profile 1 keeps trying the wss:// URL
        await security_event(plain, "ReconfigurationOfSecurityParameters", since=mark, tech="back to profile 1")


# ---------------------------------------------------------------- raising needs credentials


async def test_r_sec_1_raising_needs_the_credentials_of_the_new_profile(pki, make_daemon) -> None:
    async with CentralSystem() as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 0})
        await d.start()
        await online(d, csms)
        # no AuthorizationKey, no root, no charge point certificate: nothing above 0
        for profile in ("1", "2", "3"):
            assert await change(csms, "SecurityProfile", profile) == "Rejected", profile
        # AuthorizationKey: 16..40 bytes written as hex (TC_073's key is 19 bytes)
        for bad in ("not hex at all!!not hex at all!!", "00" * 15, "00" * 41, "0" * 33):
            assert await change(csms, "AuthorizationKey", bad) == "Rejected", bad
        assert await change(csms, "AuthorizationKey", KEY) == "Accepted"
        answer = await csms.call(BOX, "GetConfiguration", {"key": ["AuthorizationKey"]})
        assert answer.get("unknownKey") == ["AuthorizationKey"] and not answer.get("configurationKey")
        # with a key, 1 is possible; 2 still needs a CentralSystemRootCertificate
        assert await change(csms, "SecurityProfile", "2") == "Rejected"
        csms.basic_auth_password = KEY
        assert await change(csms, "SecurityProfile", "1") == "Accepted"
        await eventually(lambda: [h for h in accepted_handshakes(csms) if h.basic_auth_user == BOX],
                         "the reconnection with Basic auth")
        await csms.wait_connected(BOX)
        assert await change(csms, "SecurityProfile", "0") == "Rejected"
        assert await change(csms, "SecurityProfile", "3") == "Rejected"  # no charge point certificate
        assert await config_value(csms, "SecurityProfile") == "1"


async def test_r_sec_1_TC_073_new_authorization_key_is_used_on_reconnect(make_daemon) -> None:
    async with CentralSystem(basic_auth_password=KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, csms)
        mark = csms.mark()
        before = len(accepted_handshakes(csms))
        csms.basic_auth_password = KEY2
        assert await change(csms, "AuthorizationKey", KEY2) == "Accepted"
        await eventually(lambda: len(accepted_handshakes(csms)) > before, "a reconnection with the new key")
        assert not [h for h in csms.handshakes(BOX)[before:] if h.status == 401]
        await security_event(csms, "ReconfigurationOfSecurityParameters", since=mark, tech="AuthorizationKey")
        assert KEY2 not in json.dumps([r.payload for r in csms.calls()])


async def test_r_sec_1_TC_073_charger_reconnects_by_itself_after_a_key_change(make_daemon) -> None:
    async with CentralSystem(basic_auth_password=KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, csms)
        assert await change(csms, "AuthorizationKey", KEY2) == "Accepted"
        csms.basic_auth_password = KEY2
        before = len(accepted_handshakes(csms))
        await eventually(lambda: len(accepted_handshakes(csms)) > before, "a reconnection with the new key", 4)


# ---------------------------------------------------------------- certificates


async def test_r_sec_3_install_get_delete_certificates_TC_075_TC_076(pki, make_daemon) -> None:
    async with CentralSystem(basic_auth_password=KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, csms)

        async def ids(cert_type: str) -> dict[str, Any]:
            return await csms.call(BOX, "GetInstalledCertificateIds", {"certificateType": cert_type})

        assert await ids(CS_ROOT) == {"status": "NotFound"}
        for cert_type, ca in ((CS_ROOT, pki.root), (MFR, pki.manufacturer)):
            answer = await csms.call(BOX, "InstallCertificate", {"certificateType": cert_type, "certificate": ca.pem})
            assert answer == {"status": "Accepted"}, cert_type
            got = await ids(cert_type)
            assert got["status"] == "Accepted"
            (only,) = got["certificateHashData"]
            assert same_hash(only, hash_data(ca.cert, ca.cert)), (only, cert_type)
        # the same certificate again: Accepted, no duplicate
        assert (await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": pki.root.pem}))["status"] == "Accepted"
        assert len((await ids(CS_ROOT))["certificateHashData"]) == 1

        # rejected, nothing stored
        stored = certs_dir_state(d)
        leaf = pki.root.issue_client("not a CA")
        two = pki.rogue.pem + make_ca("second").pem
        body = pki.rogue.pem.splitlines()
        malformed = "\n".join(body[:3] + ["@@@@ not base64 @@@@"] + body[4:])
        for bad in (malformed, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "hello", leaf.cert_pem, two):
            answer = await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": bad})
            assert answer == {"status": "Rejected"}, bad[:80]
        assert certs_dir_state(d) == stored
        assert len((await ids(CS_ROOT))["certificateHashData"]) == 1

        # CertificateStoreMaxLength (10, both types together): 8 more fit, the 11th does not
        extra = [make_ca(f"extra root {i}") for i in range(9)]
        for ca in extra[:8]:
            assert (await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": ca.pem}))["status"] == "Accepted"
        stored = certs_dir_state(d)
        answer = await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": extra[8].pem})
        assert answer == {"status": "Rejected"}
        assert certs_dir_state(d) == stored
        assert len((await ids(CS_ROOT))["certificateHashData"]) == 9

        # DeleteCertificate by hash data (TC_076)
        answer = await csms.call(BOX, "DeleteCertificate", {"certificateHashData": hash_data(pki.manufacturer.cert, pki.manufacturer.cert)})
        assert answer == {"status": "Accepted"}
        assert await ids(MFR) == {"status": "NotFound"}
        answer = await csms.call(BOX, "DeleteCertificate", {"certificateHashData": hash_data(pki.manufacturer.cert, pki.manufacturer.cert)})
        assert answer == {"status": "NotFound"}
        answer = await csms.call(BOX, "DeleteCertificate", {"certificateHashData": hash_data(pki.rogue.cert, pki.rogue.cert)})
        assert answer == {"status": "NotFound"}
        # on profile 1 the central roots are not in use: even all of them may go
        for ca in (pki.root, *extra[:8]):
            answer = await csms.call(BOX, "DeleteCertificate", {"certificateHashData": hash_data(ca.cert, ca.cert)})
            assert answer == {"status": "Accepted"}
        assert await ids(CS_ROOT) == {"status": "NotFound"}

        # a certificate type we do not know: schema CALLERROR, nothing stored
        stored = certs_dir_state(d)
        for raw in (
            [2, "bad-type-1", "InstallCertificate", {"certificateType": "V2GRootCertificate", "certificate": pki.root.pem}],
            [2, "bad-type-2", "GetInstalledCertificateIds", {"certificateType": "V2GRootCertificate"}],
            [2, "bad-type-3", "DeleteCertificate", {"certificateHashData": {**hash_data(pki.root.cert, pki.root.cert), "hashAlgorithm": "MD5"}}],
        ):
            since = await csms.send_raw(BOX, json.dumps(raw))
            frame = await csms.wait_frame(BOX, lambda f, uid=raw[1]: isinstance(f.json(), list) and f.json()[1] == uid, since=since)
            assert frame.json()[0] == 4 and frame.json()[2] == "PropertyConstraintViolation", frame.text
        assert certs_dir_state(d) == stored
        await security_event(csms, "ReconfigurationOfSecurityParameters", tech=CS_ROOT)


async def test_r_sec_3_certificate_signed_is_validated_TC_077(pki, make_daemon) -> None:
    async with CentralSystem(basic_auth_password=KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, csms)
        assert (await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": pki.root.pem}))["status"] == "Accepted"
        csr, good = await sign_certificate(csms, pki.root)
        stored = certs_dir_state(d)
        assert [n for n in stored if n.endswith(".key")], "the key pair is made on the charger"
        assert "charge_point.pem" not in stored

        intermediate = pki.root.intermediate("evsectl test sub-CA")
        via_intermediate = intermediate.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode())
        long_chain = pem_of(via_intermediate) + pem_of(intermediate.cert)
        assert len(long_chain) > 1000  # CertificateSignedMaxChain
        body = pem_of(good).splitlines()
        cases = {
            "not our key (TC_077)": pki.root.issue_client(BOX).cert_pem,
            "signed by a CA that is not installed": pki.rogue.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode()),
            "chain over CertificateSignedMaxChain": long_chain,
            "malformed PEM": "\n".join(body[:2] + ["!!!!"] + body[3:]),
        }
        for why, chain in cases.items():
            if isinstance(chain, x509.Certificate):
                chain = pem_of(chain)
            mark = csms.mark()
            answer = await csms.call(BOX, "CertificateSigned", {"certificateChain": chain})
            assert answer == {"status": "Rejected"}, why
            await security_event(csms, "InvalidChargePointCertificate", since=mark)
            assert certs_dir_state(d) == stored, f"something was stored after: {why}"

        answer = await csms.call(BOX, "CertificateSigned", {"certificateChain": pem_of(good)})
        assert answer == {"status": "Accepted"}
        assert "charge_point.pem" in certs_dir_state(d)
        # now profile 3 is possible (it needs no AuthorizationKey, only the certificate and a root)
        assert await change(csms, "SecurityProfile", "3") == "Accepted"


# ---------------------------------------------------------------- triggered right after the boot


async def test_r_trig_sign_charge_point_certificate_triggered_right_after_boot_is_sent(pki, make_daemon) -> None:
    """The CSMS answers BootNotification and at once triggers SignChargePointCertificate (both
    frames back to back): Accepted means the SignCertificate comes."""
    async with CentralSystem(basic_auth_password=KEY) as csms:
        d = make_daemon(csms.url, keys={"SecurityProfile": 1, "AuthorizationKey": KEY})
        await d.start()
        await online(d, csms)
        assert (await csms.call(BOX, "InstallCertificate", {"certificateType": CS_ROOT, "certificate": pki.root.pem}))["status"] == "Accepted"
        for attempt in range(5):
            csms.respond("BootNotification", no_reply=True, once=True)
            mark = csms.mark()
            await csms.disconnect(BOX)
            boot = await csms.wait_for("BootNotification", identity=BOX, since=mark)
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            uid = f"trigger-{attempt}"
            await csms.send_raw(BOX, json.dumps([3, boot.unique_id, {"currentTime": now, "interval": 300, "status": "Accepted"}]))
            since = await csms.send_raw(BOX, json.dumps([2, uid, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}]))
            answer = await csms.wait_frame(BOX, lambda f, uid=uid: isinstance(f.json(), list) and f.json()[1] == uid, since=since)
            assert answer.json() == [3, uid, {"status": "Accepted"}]
            await csms.wait_for("SignCertificate", identity=BOX, since=mark, timeout=3)
