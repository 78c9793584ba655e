"""What each OCPP security profile means for the WebSocket connection (R-SEC 1-2).

0: ``ws://``, no authentication. 1: ``ws://`` with HTTP Basic (user = BoxIdentifier,
password = AuthorizationKey). 2: ``wss://`` with Basic, the server certificate
checked against the installed CentralSystemRootCertificate(s), TLS 1.2 or newer.
3: ``wss://`` with the charger's own client certificate and key instead of Basic.
Also: which connection failure is which security event of the whitepaper.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake, InvalidStatus


class ProfileUnusableError(Exception):
    """The credentials the profile needs are not there."""


@dataclass(frozen=True)
class ConnectOptions:
    url: str
    kwargs: dict[str, Any]


def _with_scheme(url: str, scheme: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else url
    return f"{scheme}://{rest}"


def connect_options(
    profile: int, url: str, box_identifier: str, authorization_key: str | None,
    root_bundle: Path | None, client_cert: tuple[Path, Path] | None,
) -> ConnectOptions:
    """The URL and the ``websockets.connect`` arguments for ``profile``."""
    kwargs: dict[str, Any] = {}
    if profile in (1, 2) and authorization_key:
        # without a key yet (a charger fresh from the factory) it connects without Basic
        # auth, so that the CSMS can provision one (docs/decisions.md)
        token = base64.b64encode(f"{box_identifier}:{authorization_key}".encode()).decode()
        kwargs["additional_headers"] = {"Authorization": f"Basic {token}"}
    if profile >= 2:
        if root_bundle is None:
            raise ProfileUnusableError(f"security profile {profile} needs a CentralSystemRootCertificate")
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None)
        ctx.load_verify_locations(cafile=str(root_bundle))  # only the installed roots
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if profile == 3:
            if client_cert is None:
                raise ProfileUnusableError("security profile 3 needs a charge point certificate")
            ctx.load_cert_chain(certfile=str(client_cert[0]), keyfile=str(client_cert[1]))
        kwargs["ssl"] = ctx
        kwargs["create_connection"] = TlsClientConnection
        url = _with_scheme(url, "wss")
    return ConnectOptions(url, kwargs)


class TlsClientConnection(ClientConnection):
    """A client connection whose failed opening handshake reports the TLS alert behind it.

    With TLS 1.3 the client's handshake is over before the server has checked the client
    certificate; a server refusing it sends its alert (certificate_required, unknown_ca...)
    while websockets waits for the HTTP response, and websockets then raises only
    "did not receive a valid HTTP response". The alert is the security event.
    """

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().handshake(*args, **kwargs)
        except InvalidHandshake as e:
            if isinstance(self.connection_exc, ssl.SSLError):
                raise self.connection_exc from e
            raise


#: TLS alerts by which a server refuses the charge point's own certificate (profile 3):
#: OpenSSL reason names of a *received* alert ("...ALERT_<name>").
_CLIENT_CERTIFICATE_REFUSED = (
    "ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_CERTIFICATE_EXPIRED", "ALERT_CERTIFICATE_REVOKED", "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_UNSUPPORTED_CERTIFICATE", "ALERT_ACCESS_DENIED",
)


def security_event_for(error: BaseException) -> str | None:
    """The whitepaper's security event for a failed connection attempt, if any."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return "InvalidCentralSystemCertificate"
    if isinstance(error, ssl.SSLError):
        reason = f"{getattr(error, 'reason', '')} {error}".upper()
        if any(alert in reason for alert in _CLIENT_CERTIFICATE_REFUSED):
            # the Central System refused our credentials, not the other way round
            return "FailedToAuthenticateAtCentralSystem"
        if "VERSION" in reason or "PROTOCOL" in reason:
            return "InvalidTLSVersion"
        if "CIPHER" in reason or "HANDSHAKE_FAILURE" in reason:
            return "InvalidTLSCipherSuite"
        return "InvalidCentralSystemCertificate"
    if isinstance(error, InvalidStatus) and error.response.status_code in (401, 403):
        return "FailedToAuthenticateAtCentralSystem"
    return None
