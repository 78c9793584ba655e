"""R-TX 4 / R-MODEL 3: SIGKILL the real daemon across transaction life cycles (30-cycle smoke
of ``bench/powercut.py``; the 500-cycle run is ``python bench/powercut.py``).

The checker tests feed ``check_log`` / ``check_config`` / ``check_local_list`` /
``check_profile`` doctored CSMS logs, without a daemon, to prove that each check can fail.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import powercut
import pytest
from powercut import (
    ENERGY,
    Call,
    Kill,
    Quiet,
    check_config,
    check_local_list,
    check_log,
    check_profile,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BOOT = T0 - timedelta(seconds=5)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Log:
    """A CSMS log built call by call; seqs leave room for replies and kill marks."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.seq = 0

    def add(self, action: str, payload: dict[str, Any], reply: dict[str, Any] | None = None) -> int:
        self.seq += 3
        self.calls.append(Call(self.seq, action, payload, reply))
        return self.seq

    def start(self, tag: str = "A", meter_start: int = 1000, at: float = 0, tx_id: int = 1) -> int:
        return self.add("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": meter_start,
                                             "timestamp": ts(at)}, {"transactionId": tx_id})

    def mv(self, at: float, wh: int, tx_id: int = 1) -> int:
        return self.add("MeterValues", {"connectorId": 1, "transactionId": tx_id, "meterValue": [
            {"timestamp": ts(at), "sampledValue": [
                {"value": str(wh), "measurand": ENERGY, "context": "Sample.Periodic"}]}]})

    def stop(self, meter_stop: int, at: float, tx_id: int = 1, reason: str = "Local") -> int:
        return self.add("StopTransaction", {"transactionId": tx_id, "meterStop": meter_stop,
                                            "timestamp": ts(at), "reason": reason})


def clean_log(samples: tuple[float, ...] = (10, 20, 30), stop_at: float = 35) -> Log:
    log = Log()
    log.start()
    for i, at in enumerate(samples):
        log.mv(at, 1000 + 100 * (i + 1))
    log.stop(1000 + 100 * len(samples) + 50, stop_at)
    return log


def check(log: Log, kills: list[Kill] | None = None, register: int | None = None,
          boots: list[datetime] | None = None, start_register: int = 1000) -> powercut.LogCheck:
    stop_wh = next(c.payload["meterStop"] for c in reversed(log.calls) if c.action == "StopTransaction")
    quiets = [Quiet(0, {1: start_register}), Quiet(log.seq + 1, {1: stop_wh if register is None else register})]
    return check_log(log.calls, kills or [], boots or [BOOT], quiets)


def texts(result: powercut.LogCheck) -> str:
    return "\n".join(f.text for f in result.failures)


# ------------------------------------------------------------------ check_log


def test_checker_passes_a_clean_log() -> None:
    result = check(clean_log())
    assert not result.failures, texts(result)
    assert result.transactions == 1 and result.samples == 3 and result.gaps_checked == 4
    assert result.meter_stops_checked == 1


def test_checker_finds_a_gap_between_two_meter_values() -> None:
    result = check(clean_log(samples=(10, 20, 33), stop_at=35))
    assert "MeterValues gap of 13.0 s" in texts(result)


def test_checker_finds_a_late_first_sample_and_a_late_stop() -> None:
    assert "gap of 12.5 s" in texts(check(clean_log(samples=(12.5, 20), stop_at=25)))
    assert "gap of 15.0 s" in texts(check(clean_log(samples=(10, 20), stop_at=35)))


def test_checker_allows_the_tolerance_but_not_more() -> None:
    assert not check(clean_log(samples=(10, 22, 32), stop_at=33)).failures
    assert check(clean_log(samples=(10, 22.1, 32), stop_at=33)).failures


def kill_log(last_sample: float, kill_at: float, stop_reason: str = "PowerLoss",
             boot_after_s: float = 3.0, stop_after_boot_s: float = 0.5) -> tuple[Log, list[Kill], list[datetime]]:
    """Transaction A open at a kill; the restarted daemon (own clock) closes it at boot."""
    log = Log()
    log.start()
    at, wh = 10.0, 1100
    while at <= last_sample:
        log.mv(at, wh)
        at, wh = at + 10, wh + 100
    kill = Kill(1, "meter_values", log.seq + 1, T0 + timedelta(seconds=kill_at), open_tx={(1, "A", 1000)})
    log.seq += 2
    boot2 = T0 + timedelta(seconds=kill_at + boot_after_s)
    log.stop(wh - 100, kill_at + boot_after_s + stop_after_boot_s, reason=stop_reason)
    return log, [kill], [BOOT, boot2]


def test_checker_does_not_count_the_downtime_after_a_kill_as_a_gap() -> None:
    log, kills, boots = kill_log(last_sample=30, kill_at=35, boot_after_s=600)
    result = check(log, kills, boots=boots)
    assert not result.failures, texts(result)
    assert result.closed_at_boot == 1


def test_checker_finds_a_sample_missed_before_the_kill() -> None:
    log, kills, boots = kill_log(last_sample=30, kill_at=43)
    assert "gap of 13.0 s before the kill" in texts(check(log, kills, boots=boots))


def test_checker_wants_sampling_or_the_stop_within_one_interval_after_the_restart() -> None:
    log, kills, boots = kill_log(last_sample=30, kill_at=35, stop_after_boot_s=15)
    assert "gap of 15.0 s after the restart" in texts(check(log, kills, boots=boots))


def test_checker_wants_reason_powerloss_for_a_transaction_open_at_a_kill() -> None:
    log, kills, boots = kill_log(last_sample=30, kill_at=35, stop_reason="Local")
    assert "not PowerLoss" in texts(check(log, kills, boots=boots))


def test_checker_finds_a_transaction_started_twice() -> None:
    log = Log()
    log.start("A", 1000, 0, tx_id=1)
    log.start("A", 1000, 1, tx_id=2)  # another content, same badge
    log.stop(1000, 2, tx_id=2)
    assert "different StartTransaction contents" in texts(check(log))
    log = Log()
    log.start("A", 1000, 0, tx_id=1)
    log.start("A", 1010, 1, tx_id=2)  # another session for one badge
    log.stop(1000, 2, tx_id=1)
    log.stop(1010, 3, tx_id=2)
    assert "started twice" in texts(check(log))


def test_checker_allows_a_start_resent_across_a_kill_only() -> None:
    def log_with_copy() -> Log:
        log = Log()
        log.start("A", 1000, 0, tx_id=1)
        log.seq += 1
        log.start("A", 1000, 0, tx_id=2)
        log.stop(1000, 3, tx_id=2, reason="PowerLoss")
        return log
    result = check(log_with_copy())
    assert "StartTransaction sent twice by a daemon that was not killed" in texts(result)
    log = log_with_copy()
    kill = Kill(1, "start_queued", 4, T0 + timedelta(seconds=0.5), open_tx={(1, "A", 1000)})
    result = check(log, [kill], boots=[BOOT, T0 + timedelta(seconds=1)])
    assert not result.failures, texts(result)
    assert result.resent_starts == 1


def test_checker_finds_a_wrong_meter_stop() -> None:
    assert "meterStop 1350 but the meter register read 1400 Wh" in texts(check(clean_log(), register=1400))
    log = clean_log()
    log.calls[-1] = Call(log.calls[-1].seq, "StopTransaction", {**log.calls[-1].payload, "meterStop": 1250})
    assert "below energy already reported 1300" in texts(check(log, register=1250))


def test_checker_allows_meter_stop_held_at_the_reported_energy_only() -> None:
    log, kills, boots = kill_log(last_sample=30, kill_at=35)  # stops at 1300 = last reported
    result = check(log, kills, boots=boots, register=1290)  # the register lost 10 Wh at the kill
    assert not result.failures, texts(result)
    assert result.meter_stop_held_at_reported == 1


def test_checker_finds_energy_outside_a_transaction() -> None:
    assert "energy outside a transaction" in texts(check(clean_log(), start_register=900))


def test_checker_finds_a_lost_or_doubled_stop() -> None:
    log = clean_log()
    log.calls.pop()
    quiets = [Quiet(0, {1: 1000})]
    assert "no StopTransaction (transaction lost)" in texts(check_log(log.calls, [], [BOOT], quiets))
    log = clean_log()
    log.stop(1351, 36)
    assert "2 different StopTransactions" in texts(check(log))
    log = clean_log()
    log.stop(1350, 35)  # the same again, no kill in between
    assert "StopTransaction sent twice" in texts(check(log))


def test_checker_finds_meter_values_out_of_order() -> None:
    log = Log()
    log.start()
    log.mv(10, 1100)
    log.mv(20, 1050)
    log.stop(1100, 25)
    assert "out of order" in texts(check(log))
    log = Log()
    log.start()
    log.mv(20, 1100)
    log.mv(10, 1200)
    log.stop(1200, 25)
    assert "out of order" in texts(check(log))


def test_checker_finds_what_was_on_disk_at_a_kill_but_never_delivered() -> None:
    log = clean_log()
    lost_mv = {"connectorId": 1, "transactionId": 1, "meterValue": [
        {"timestamp": ts(40), "sampledValue": [{"value": "1400", "measurand": ENERGY}]}]}
    kill = Kill(1, "stop", log.seq + 1, T0 + timedelta(seconds=50), open_tx={(1, "B", 1350)},
                outbox=[("MeterValues", lost_mv)])
    result = check(log, [kill], boots=[BOOT, T0 + timedelta(seconds=60)])
    assert "transaction on disk at the kill never reached the CSMS: (1, 'B', 1350)" in texts(result)
    assert "queued MeterValues on disk at the kill never delivered" in texts(result)


def test_checker_finds_an_unknown_stop() -> None:
    log = clean_log()
    log.stop(1350, 36, tx_id=99)
    assert "transactionId 99 that no StartTransaction got" in texts(check(log))


# ------------------------------------------------------------------ old or new, never torn


def test_checker_finds_a_torn_local_list() -> None:
    old = (3, frozenset({("LL1", "Accepted"), ("LL2", "Accepted")}))
    new = (4, frozenset({("LL1", "Blocked"), ("LD3", "Accepted")}))
    assert not check_local_list(old, new, old, new, 4, True)
    assert not check_local_list(old, new, old, old, 3, False)
    torn = (4, frozenset({("LL1", "Blocked"), ("LL2", "Accepted")}))  # half the differential update
    assert "local list on disk at the kill torn" in " ".join(check_local_list(old, new, torn, new, 4, True))
    assert "after the restart torn" in " ".join(check_local_list(old, new, old, torn, 4, False))
    assert "neither old 3 nor new 4" in " ".join(check_local_list(old, new, old, old, 5, False))
    assert "answered Accepted before the kill" in " ".join(check_local_list(old, new, old, old, 3, True))
    assert "but v3 on disk" in " ".join(check_local_list(old, new, old, old, 4, False))


def test_checker_finds_a_torn_configuration() -> None:
    assert not check_config("ConnectionTimeOut", "120", "90", [None, "90"], "90", True)
    assert "on disk at the kill '9': neither" in " ".join(
        check_config("ConnectionTimeOut", "120", "90", ["9", "90"], "90", False))
    assert "read back 'Energy.Active.Import.Register'" in " ".join(
        check_config("MeterValuesSampledData", "Energy.Active.Import.Register,Power.Active.Import",
                     "Energy.Active.Import.Register,SoC", [None, None], "Energy.Active.Import.Register", False))
    assert "answered Accepted before the kill" in " ".join(
        check_config("ConnectionTimeOut", "120", "90", [None, None], "120", True))


def test_checker_finds_a_torn_charging_profile() -> None:
    assert not check_profile(None, 22000.0, [], [22000.0], 22000.0, True, 180000.0)
    assert not check_profile(11000.0, 22000.0, [11000.0], [11000.0], 11000.0, False, 180000.0)
    assert "on disk at the kill: limits [33000.0]" in " ".join(
        check_profile(11000.0, 22000.0, [33000.0], [22000.0], 22000.0, False, 180000.0))
    assert "composite limit 180000.0" in " ".join(
        check_profile(11000.0, 22000.0, [11000.0], [], 180000.0, False, 180000.0))
    assert "answered Accepted" in " ".join(
        check_profile(11000.0, 22000.0, [11000.0], [11000.0], 11000.0, True, 180000.0))
    assert "but profile 7 on disk says 22000.0" in " ".join(
        check_profile(11000.0, 22000.0, [11000.0], [22000.0], 11000.0, False, 180000.0))


# ------------------------------------------------------------------ against the daemon


@pytest.mark.timeout(150)
async def test_r_tx_4_power_cut_smoke_30_cycles_pro_dc() -> None:
    t0 = time.monotonic()
    result = await powercut.run(cycles=30, seed=2026)
    assert result.cycles == 30 and result.kills == 30
    assert result.transactions > 0 and result.messages_checked > 0 and result.log.gaps_checked > 0
    assert not result.failures, "\n".join(str(f) for f in result.failures)
    assert time.monotonic() - t0 < 90


@pytest.mark.timeout(120)
async def test_r_model_3_power_cut_smoke_starcharge_power_fail_path() -> None:
    # every scenario, the power-fail path weighted up so that 12 cycles see it several times
    mix = (*powercut.SCENARIOS, *["power_fail"] * 4)
    result = await powercut.run(cycles=12, seed=7, model="Schneider StarCharge Fast 60", scenarios=mix)
    assert result.per_scenario.get("power_fail", 0) >= 3
    assert result.kills == 12 and result.log.closed_at_boot + result.log.transactions > 0
    assert not result.failures, "\n".join(str(f) for f in result.failures)
