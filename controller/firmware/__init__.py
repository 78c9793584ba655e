"""Firmware = this software (R-FW 3): release artifacts, side-by-side installs, switch, rollback.

This package owns what happens to a release artifact once it is on the
charger's disk: checking it (`installer.inspect_artifact`), installing it into
its own environment under the state directory (`installer.install_release`),
switching the release in force atomically (`installer.switch_to`), the trial
marker that lets a launcher roll back a release that never reaches
BootNotification Accepted (`installer.begin_trial` … `installer.roll_back`),
and exec'ing into a release (`installer.exec_release`). The on-disk layout is
described in `controller.firmware.installer` and is shared with the SD image.

It does not own the transfers (download/upload), the OCPP UpdateFirmware state
machine or its status notifications: those call these functions (blocking;
run them with ``asyncio.to_thread``). Stdlib only; importing it starts nothing.
"""
