"""Screen pictures: bounded downloads, PNG checks, storage (R-DT 2/3).

The core decides what to fetch (``controller.core.pictures``) and calls
:meth:`PictureStore.perform` through ``Charger.picture_port`` before it answers,
because the DataTransfer answer carries the outcome (``downloadStatus``). So
the whole operation is bounded by ``deadline_s`` (default 8 s, well inside the
CSMS's call time-out): the transfer runs with a short per-operation time-out,
and its progress callback aborts it once the deadline has passed. ``perform``
blocks; the runtime calls it in a worker thread (the core answers with a
``DeferredReply``), so the asyncio loop keeps running meanwhile.

Files live in ``<state>/pictures/``: ``tariff.png``, ``logo.png``,
``screensaver1.png`` and ``screensaver2.png``, plus ``pictures.json`` (which
ones are current, and their versions) so they survive a restart. A download
goes to ``pictures/incoming/`` first; only a complete file that passes the PNG
check is moved into place (``os.replace``): a failure replaces nothing.

PNG check with the standard library (``struct`` + ``zlib``): the signature,
an IHDR chunk first with a valid CRC, a sane size (1..8192 px each way) and an
IEND chunk at the end. No Pillow and never pygame in the controller: the HMI
decodes the pictures, and shows its default when one does not load anyway.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.pictures import DOWNLOADED, PictureRequest

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 8192
INDEX = "pictures.json"


class InvalidImage(Exception):
    pass


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file; raise :class:`InvalidImage` when it is not one."""
    with open(path, "rb") as f:
        head = f.read(33)
        if len(head) < 33 or head[:8] != PNG_SIGNATURE:
            raise InvalidImage("not a PNG (signature)")
        length, ctype = struct.unpack(">I4s", head[8:16])
        if ctype != b"IHDR" or length != 13:
            raise InvalidImage("not a PNG (no IHDR first)")
        (crc,) = struct.unpack(">I", head[29:33])
        if zlib.crc32(head[12:29]) != crc:
            raise InvalidImage("broken PNG (IHDR CRC)")
        width, height = struct.unpack(">II", head[16:24])
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise InvalidImage(f"unreasonable PNG size {width}x{height}")
        f.seek(-12, os.SEEK_END)
        if f.read(12)[4:8] != b"IEND":
            raise InvalidImage("truncated PNG (no IEND)")
    return width, height


class PictureStore:
    """See the module docstring."""

    def __init__(self, state_dir: Path, *, deadline_s: float = 8.0, op_timeout_s: float = 4.0,
                 ca_file: Callable[[], Path | None] | None = None) -> None:
        self.dir = Path(state_dir) / "pictures"
        self.incoming = self.dir / "incoming"
        self.deadline_s = deadline_s
        self.op_timeout_s = op_timeout_s
        self.ca_file = ca_file
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index = self._load()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pictures")

    # ------------------------------------------------------------ state
    def _load(self) -> dict[str, Any]:
        try:
            index = json.loads((self.dir / INDEX).read_text())
        except (OSError, ValueError):
            index = {}
        out: dict[str, Any] = {"version": int(index.get("version", 0))}
        for kind in ("tariff", "logo"):
            entry = index.get(kind)
            if isinstance(entry, dict) and (self.dir / f"{kind}.png").is_file():
                out[kind] = int(entry.get("version", 0))
        names = [n for n in index.get("screensaver", []) if (self.dir / str(n)).is_file()]
        out["screensaver"] = names[:2]
        out["screensaver_version"] = int(index.get("screensaver_version", 0))
        return out

    def _save(self) -> None:
        tmp = self.dir / (INDEX + ".tmp")
        body = {
            "version": self._index["version"],
            **{k: {"version": self._index[k]} for k in ("tariff", "logo") if k in self._index},
            "screensaver": self._index["screensaver"],
            "screensaver_version": self._index["screensaver_version"],
        }
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.dir / INDEX)

    def view(self) -> dict[str, Any]:
        """What the snapshot shows: absolute paths and versions."""
        out: dict[str, Any] = {"tariff": None, "logo": None, "screensaver": []}
        for kind in ("tariff", "logo"):
            if kind in self._index:
                out[kind] = {"path": str(self.dir / f"{kind}.png"), "version": self._index[kind]}
        v = self._index["screensaver_version"]
        out["screensaver"] = [{"path": str(self.dir / n), "version": v} for n in self._index["screensaver"]]
        return out

    # ------------------------------------------------------------ the port
    def perform(self, request: PictureRequest) -> str:
        """Fetch, check and install; return ``Downloaded`` or a failure status. Blocks
        at most about ``deadline_s``."""
        from ..transfer import TransferError  # lazy: idle RSS (bench/idle.py)

        end = time.monotonic() + self.deadline_s
        shutil.rmtree(self.incoming, ignore_errors=True)
        self.incoming.mkdir(parents=True)
        future = self._pool.submit(self._fetch, request, end)
        try:
            files = future.result(timeout=self.deadline_s + 1.0)
        except concurrent.futures.TimeoutError:
            log.warning("%s picture from %s: no answer within %.0f s", request.kind, _shown(request), self.deadline_s)
            return "DownloadFailed"
        except TransferError as e:
            log.warning("%s picture download failed: %s", request.kind, e)
            return "TooLarge" if e.kind == "too_large" else "DownloadFailed"
        except _Deadline:
            log.warning("%s picture: download over %.0f s, abandoned", request.kind, self.deadline_s)
            return "DownloadFailed"
        except InvalidImage as e:
            log.warning("%s picture refused: %s", request.kind, e)
            return "InvalidImage"
        except _NoPictures as e:
            log.warning("%s pictures: %s", request.kind, e)
            return "DownloadFailed"
        self._install(request.kind, files)
        log.info("%s picture installed from %s", request.kind, _shown(request))
        return DOWNLOADED

    def _fetch(self, request: PictureRequest, end: float) -> list[Path]:
        from ..transfer import download, list_ftp_dir

        def progress(done: int, total: int | None) -> None:
            if time.monotonic() > end:
                raise _Deadline()

        ca_file = self.ca_file() if self.ca_file is not None else None

        def one(url: str, name: str) -> Path:
            dest = self.incoming / name
            timeout = max(0.5, min(self.op_timeout_s, end - time.monotonic()))
            download(url, dest, max_bytes=request.max_bytes, timeout_s=timeout, ca_file=ca_file,
                     progress=progress)
            png_size(dest)
            return dest

        if request.type == "folder":
            base = request.location if request.location.endswith("/") else request.location + "/"
            names = [n for n in list_ftp_dir(base, timeout_s=self.op_timeout_s) if n.lower().endswith(".png")]
            if not names:
                raise _NoPictures("no PNG in the folder")
            return [one(base + n, f"screensaver{i + 1}.png") for i, n in enumerate(names[:2])]
        name = "screensaver1.png" if request.kind == "screensaver" else f"{request.kind}.png"
        return [one(request.location, name)]

    def _install(self, kind: str, files: list[Path]) -> None:
        self._index["version"] += 1
        version = self._index["version"]
        for f in files:
            os.replace(f, self.dir / f.name)
        if kind == "screensaver":
            names = [f.name for f in files]
            for stale in {"screensaver1.png", "screensaver2.png"} - set(names):
                (self.dir / stale).unlink(missing_ok=True)
            self._index["screensaver"] = names
            self._index["screensaver_version"] = version
        else:
            self._index[kind] = version
        self._save()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def attach_pictures(core: Any, store: PictureStore) -> None:
    """Give the core its picture port, and keep its picture view current."""

    core.picture_port = store.perform  # blocking: run in a worker thread (DeferredReply)
    core.picture_view = store.view  # read back on the loop once a download is done
    core.pictures = store.view()


class _Deadline(Exception):
    pass


class _NoPictures(Exception):
    pass


def _shown(request: PictureRequest) -> str:
    """The location without a password (never logged)."""
    import re

    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", request.location)


__all__ = ["InvalidImage", "PictureStore", "attach_pictures", "png_size"]
