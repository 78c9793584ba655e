"""Idle footprint (issue 10, bench/idle.py: RSS <= 45 MB): a charger in security profile 0
or 1 never loads ``cryptography`` (about 10 MB of RSS) nor the file-transfer stack until
a certificate or transfer operation needs them."""

from __future__ import annotations

import subprocess
import sys

from controller.ocpp.link import CsmsLink


class _Keys(dict):
    def get_int(self, key: str) -> int:
        return int(self.get(key) or 0)


class _Untouchable:
    """A certificate store whose every use fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the certificate store was used ({name}) in profile 0/1")


def test_regression_idle_rss_profile_0_and_1_connect_without_the_certificate_store() -> None:
    keys = _Keys(SupervisionUrl="ws://127.0.0.1:9/ocpp", BoxIdentifier="CP1", AuthorizationKey="0011")
    link = CsmsLink(None, None, keys, security=_Untouchable())
    for profile in (0, 1):
        assert link._options(profile).url.startswith("ws://127.0.0.1:9/ocpp")


def test_regression_idle_rss_the_daemon_modules_do_not_import_cryptography() -> None:
    code = (
        "import sys, controller.app, controller.cli, controller.runtime.maintenance, "
        "controller.runtime.pictures\n"
        "from pathlib import Path; import tempfile\n"
        "store = controller.app.LazyCertificateStore(Path(tempfile.mkdtemp()) / 'certs', "
        "max_entries=1, max_chain=1)\n"
        "print(sorted(m for m in ('cryptography', 'controller.transfer', 'ftplib') "
        "if m in sys.modules))\n"
        "store.installed_ids('CentralSystemRootCertificate')\n"
        "print('cryptography' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stdout + out.stderr
