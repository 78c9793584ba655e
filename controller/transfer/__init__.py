"""File transfers over FTP, HTTP and HTTPS for firmware, diagnostics, logs and
screen pictures (R-FW 1, R-DT 2/3). Blocking: call through ``asyncio.to_thread``.
See :mod:`controller.transfer.transfer` for the decisions."""

from .transfer import (
    KINDS,
    SCHEMES,
    TransferError,
    TransferResult,
    download,
    list_ftp_dir,
    safe_join,
    safe_name,
    tls_context,
    upload,
)

__all__ = [
    "KINDS",
    "SCHEMES",
    "TransferError",
    "TransferResult",
    "download",
    "list_ftp_dir",
    "safe_join",
    "safe_name",
    "tls_context",
    "upload",
]
