"""Screen pictures from vendor DataTransfer: the decisions (R-DT 2, 3).

``com.se.tariff`` / TariffDownload and ``Schneider Electric`` / ImageDownload
(fileType ``logo`` or ``screensaver``). This module only checks the request and
says what must be fetched (a :class:`PictureRequest`) and with which limits;
the download itself is the runtime's (``controller.runtime.pictures``), reached
through a port the runtime injects (``Charger.picture_port``): the OCPP answer
must carry ``downloadStatus``, so the download happens, bounded, before the
core answers (see ``docs/decisions.md``). The handler returns a
:class:`~controller.core.deferred.DeferredReply`: the runtime runs the port in a
worker thread and the event loop keeps going meanwhile.

Answers: ``status`` ``Accepted`` with ``data = {"downloadStatus": "Downloaded"}``
on success; ``Rejected`` with ``data = {"downloadStatus": <failure>}`` otherwise,
the failure being one of :data:`FAILURES`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .deferred import DeferredReply

#: TariffDownload: "File size cannot exceed 2048 KBytes"
TARIFF_MAX = 2048 * 1024
#: logo: "less than 1M byte"
LOGO_MAX = 1024 * 1024 - 1
#: screensaver: no limit in the guide; a 1024x768 PNG photo is ~1-2 MB
SCREENSAVER_MAX = 4 * 1024 * 1024

DOWNLOADED = "Downloaded"
FAILURES = (
    "InvalidRequest",  # missing/unknown fileType or type, bad location, folder not over FTP
    "DownloadFailed",  # network, 404, authentication, time-out
    "TooLarge",  # over the size limit (announced or measured)
    "InvalidImage",  # not a PNG (or a broken one)
    "NotSupported",  # no picture store in this build (no runtime port)
)


@dataclass(frozen=True)
class PictureRequest:
    kind: str  # "tariff" | "logo" | "screensaver"
    type: str  # "file" | "folder" (folder: screensaver over FTP, two PNGs)
    location: str
    max_bytes: int


def parse(message_id: str, data: Any) -> PictureRequest | str:
    """The request, or the failure status to answer."""
    try:
        body = _lenient_json(data) if isinstance(data, str) else data
    except ValueError:
        return "InvalidRequest"
    if not isinstance(body, dict):
        return "InvalidRequest"
    file_type = str(body.get("fileType", "")).strip().lower()
    kind_type = str(body.get("type", "file")).strip().lower()
    location = body.get("location")
    if not isinstance(location, str) or not re.match(r"^(ftp|https?)://", location, re.I):
        return "InvalidRequest"
    if message_id == "TariffDownload":
        if file_type not in ("tariff", "") or kind_type != "file":
            return "InvalidRequest"
        size = body.get("size")
        if isinstance(size, int | float) and not isinstance(size, bool) and size > TARIFF_MAX:
            return "TooLarge"
        return PictureRequest("tariff", "file", location, TARIFF_MAX)
    if message_id == "ImageDownload":
        if file_type == "logo" and kind_type == "file":
            return PictureRequest("logo", "file", location, LOGO_MAX)
        if file_type == "screensaver" and kind_type == "file":
            return PictureRequest("screensaver", "file", location, SCREENSAVER_MAX)
        if file_type == "screensaver" and kind_type == "folder":
            if not location.lower().startswith("ftp://"):
                return "InvalidRequest"  # the guide: two pictures only over FTP
            return PictureRequest("screensaver", "folder", location, SCREENSAVER_MAX)
        return "InvalidRequest"
    return "InvalidRequest"


PicturePort = Callable[[PictureRequest], str]


def handler(message_id: str) -> Callable[[Any, Any], tuple[str, str | None]]:
    """A vendor handler for ``Charger.register_vendor``."""

    def handle(charger: Any, data: Any) -> tuple[str, str | None]:
        request = parse(message_id, data)
        if isinstance(request, str):
            return "Rejected", _answer(request)
        port: PicturePort | None = getattr(charger, "picture_port", None)
        if port is None:
            return "Rejected", _answer("NotSupported")
        # the download is blocking I/O: the runtime runs it off the event loop
        return DeferredReply(lambda: port(request), lambda outcome: _done(charger, outcome))

    return handle


def register(charger: Any, tariff_vendor: str, image_vendor: str) -> None:
    charger.register_vendor(tariff_vendor, "TariffDownload", handler("TariffDownload"))
    charger.register_vendor(image_vendor, "ImageDownload", handler("ImageDownload"))


def _done(charger: Any, outcome: str) -> tuple[str, str]:
    """Back on the loop: refresh the core's picture view (``Charger.picture_view``), answer."""
    view = getattr(charger, "picture_view", None)
    if view is not None:
        charger.pictures = view()
    return ("Accepted" if outcome == DOWNLOADED else "Rejected"), _answer(outcome)


def _answer(status: str) -> str:
    return json.dumps({"downloadStatus": status})


def _lenient_json(text: str) -> Any:
    """JSON, also with the guide's unquoted keys ({fileType:"logo",...})."""
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(re.sub(r'([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:', r'\1"\2":', text))


__all__ = ["PictureRequest", "parse", "handler", "register", "DOWNLOADED", "FAILURES",
           "TARIFF_MAX", "LOGO_MAX", "SCREENSAVER_MAX"]
