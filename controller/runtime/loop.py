"""The runtime: owns the charger core, feeds it events, executes its commands.

Everything here runs on one asyncio loop, so the core is only ever touched by
one task at a time. Hardware commands for a connector are executed in order by
that connector's worker (a stop's meter reading comes after the power is off).
Transaction messages are delivered from the on-disk queue by :class:`Outbox`,
one at a time, oldest first, only while the CSMS has accepted our boot; one the
CSMS left unanswered on a link that stays up is sent again after
TransactionMessageRetryInterval.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from drivers import interfaces as hw

from ..core import commands as cmd
from ..core import events as ev
from ..core.charger import BESIDE_BACKLOG, Charger
from ..core.deferred import DeferredReply

log = logging.getLogger(__name__)

#: how long a StarCharge box keeps running on its hold-up capacitors
HOLD_UP_S = 3.0
#: how long a shutdown/reset waits for the queue to drain
DRAIN_S = 5.0


class LinkPort:
    """What the runtime needs from the CSMS link (implemented by controller.ocpp.link)."""

    async def send_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def set_ping_interval(self, interval_s: int) -> None:
        raise NotImplementedError

    def reconnect(self) -> None:
        raise NotImplementedError


class CallRejected(Exception):
    """The CSMS answered a CALL with a CALLERROR (the link adapter raises a subclass)."""

    code = "GenericError"


def coalescing_key(c: cmd.SendCall) -> tuple[Any, ...] | None:
    """Calls a newer one of the same key makes pointless while they wait for their turn: a
    connector's StatusNotification (the newer carries the status now) and the Heartbeat.
    Behind a CSMS that answers slowly (or pipelines its own CALLs), ours would otherwise
    pile up in memory without bound; everything else is sent, in order."""
    if c.action == "StatusNotification" and isinstance(c.payload, dict):
        return ("StatusNotification", c.payload.get("connectorId"))
    if c.action == "Heartbeat":
        return ("Heartbeat",)
    return None


class Runtime:
    """See the module docstring."""

    def __init__(
        self,
        core: Charger,
        drivers: dict[str, Any],
        clock: Any,
        *,
        error_code_of: Callable[[BaseException], str | None],
    ) -> None:
        self.core = core
        self.drivers = drivers
        self.clock = clock
        self._error_code_of = error_code_of
        self.link: LinkPort | None = None
        self.maintenance: Any = None  # controller.runtime.maintenance.MaintenanceRunner
        self._deferred: list[cmd.Command] | None = None
        self._wake = asyncio.Event()
        self._workers: dict[int, asyncio.Queue[Callable[[], Awaitable[None]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # our non-transaction CALLs go out one at a time, in order (OCPP-J: one in flight);
        # one still waiting for its turn is replaced by a newer one of the same kind
        self._call_gate = asyncio.Lock()
        self._waiting_calls: dict[tuple[Any, ...], asyncio.Task[Any]] = {}
        self.outbox = Outbox(self)
        self.leaving: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        clock.on_jump(self._wake.set)

    # ------------------------------------------------------------ core access
    def dispatch(self, event: object) -> None:
        """Feed one event to the core and execute what it asks."""
        self._execute(self.core.handle(event))
        self._wake.set()  # the core's next deadline may have moved

    def handles(self, action: str) -> bool:
        return self.core.handles(action)

    def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """A CSMS request: answer now (or, for a DeferredReply, once its blocking work
        is done in a worker thread), keep the commands until release()."""
        reply = self.core.request(action, payload)
        self._keep(self.core.take_commands())
        if isinstance(reply, DeferredReply):
            return self._complete(reply)
        return reply

    def _keep(self, commands: list[cmd.Command]) -> None:
        if self._deferred is None:
            self._deferred = []
        self._deferred.extend(commands)

    async def _complete(self, deferred: DeferredReply) -> dict[str, Any]:
        outcome = await asyncio.to_thread(deferred.run)
        reply = deferred.finish(outcome)
        self._keep(self.core.take_commands())
        return reply

    def release(self) -> None:
        """The answer is on the wire: run what the request caused."""
        deferred, self._deferred = self._deferred, None
        if deferred:
            self._execute(deferred)
        self._wake.set()

    def emit_from_driver(self, event: hw.DriverEvent) -> None:
        """``DriverContext.emit``: thread-safe entry of driver events."""
        loop = self._loop
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(self._driver_event, event)

    def bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def _driver_event(self, event: hw.DriverEvent) -> None:
        mapped = _map_driver_event(event)
        if mapped is not None:
            self.dispatch(mapped)

    # ------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Fire the core's timers when due; sleeps otherwise (no polling)."""
        self.bind_loop()
        self.dispatch(ev.Started())
        while True:
            deadline = self.core.next_deadline()
            outbox_due = self.outbox.not_before if self.outbox.waiting_retry else None
            due = min((d for d in (deadline, outbox_due) if d is not None), default=None)
            loop = asyncio.get_running_loop()
            alarm = None if due is None else loop.call_later(max(0.0, due - self.clock.monotonic()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if alarm is not None:
                    alarm.cancel()
            self._wake.clear()
            if self.outbox.waiting_retry and self.clock.monotonic() >= self.outbox.not_before:
                self.outbox.kick()
            self._execute(self.core.handle(ev.Tick()))

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------ link
    def link_up(self, link: LinkPort) -> None:
        self.link = link
        self.dispatch(ev.LinkUp())

    def link_down(self, link: LinkPort) -> None:
        if self.link is link:
            self.link = None
            self.dispatch(ev.LinkDown())
        self.outbox.kick()

    # ------------------------------------------------------------ commands
    def _execute(self, commands: list[cmd.Command]) -> None:
        for c in commands:
            if isinstance(c, cmd.SendCall):
                if isinstance(c.ref, tuple) and c.ref[0] == BESIDE_BACKLOG:
                    self.outbox.beside.add(c.ref[1])  # at once: before the outbox can reach the row
                key = coalescing_key(c)
                older = self._waiting_calls.pop(key, None) if key is not None else None
                if older is not None:
                    older.cancel()  # not sent yet: the newer one says all it would have said
                task = self.spawn(self._send_call(c, key), f"call {c.action}")
                if key is not None:
                    self._waiting_calls[key] = task
            elif isinstance(c, cmd.WakeOutbox):
                self.outbox.kick(c.delay_s)
            elif isinstance(c, cmd.Sample):
                self._hw(c.connector_id, lambda c=c: self._sample(c))
            elif isinstance(c, cmd.EnablePower):
                self._hw(c.connector_id, lambda c=c: self._power(c.connector_id, True))
            elif isinstance(c, cmd.DisablePower):
                self._hw(c.connector_id, lambda c=c: self._power(c.connector_id, False))
            elif isinstance(c, cmd.SetPowerLimit):
                self._hw(c.connector_id, lambda c=c: self._limit(c.connector_id, c.power_w))
            elif isinstance(c, cmd.SetClock):
                self.clock.set_wall(c.wall)
            elif isinstance(c, cmd.SetPingInterval):
                if self.link is not None:
                    self.link.set_ping_interval(c.interval_s)
            elif isinstance(c, cmd.DownloadFirmware | cmd.InstallFirmware | cmd.CommitFirmware | cmd.UploadBundle):
                if self.maintenance is None:
                    log.error("no maintenance runner: %s ignored", c)
                else:
                    self.maintenance.execute(c)
            elif isinstance(c, cmd.Reconnect):
                link = self.link
                if link is not None:
                    link.reconnect()
            elif isinstance(c, cmd.Restart):
                if not self.leaving.done():
                    self.leaving.set_result(c.kind)
            else:  # pragma: no cover - the Command union is closed
                raise TypeError(c)

    async def _send_call(self, c: cmd.SendCall, key: tuple[Any, ...] | None = None) -> None:
        async with self._call_gate:
            if key is not None and self._waiting_calls.get(key) is asyncio.current_task():
                del self._waiting_calls[key]  # on its way: no longer replaceable
            await self._send_call_now(c)

    async def _send_call_now(self, c: cmd.SendCall) -> None:
        beside = c.ref[1] if isinstance(c.ref, tuple) and c.ref[0] == BESIDE_BACKLOG else None
        link = self.link
        if link is None:
            self.outbox.beside.discard(beside)
            self.dispatch(ev.CallFailed(c.ref, c.action, "offline"))
            return
        try:
            reply = await link.send_call(c.action, c.payload)
        except Exception as e:  # noqa: BLE001 - every failure is reported to the core
            code = self._error_code_of(e)
            reason = "error" if code else ("timeout" if isinstance(e, TimeoutError) else "offline")
            log.warning("%s failed: %s %s", c.action, reason, code or e)
            self.outbox.beside.discard(beside)
            self.dispatch(ev.CallFailed(c.ref, c.action, reason, code))
            return
        self.outbox.beside.discard(beside)
        self.dispatch(ev.CallAnswered(c.ref, c.action, reply))

    def _hw(self, cid: int, job: Callable[[], Awaitable[None]]) -> None:
        queue = self._workers.get(cid)
        if queue is None:
            queue = self._workers[cid] = asyncio.Queue()
            self.spawn(self._worker(queue), f"hardware c{cid}")
        queue.put_nowait(job)

    async def _worker(self, queue: asyncio.Queue[Callable[[], Awaitable[None]]]) -> None:
        while True:
            job = await queue.get()
            try:
                await job()
            except Exception:  # noqa: BLE001 - a driver bug must not kill the worker
                log.exception("hardware job failed")

    async def _sample(self, c: cmd.Sample) -> None:
        meter = power = None
        errors = []
        try:
            meter = await self.drivers["meter"].read(c.connector_id)
        except hw.DriverError as e:
            errors.append(f"meter: {e}")
        try:
            power = await self.drivers["power"].status(c.connector_id)
        except hw.DriverError as e:
            errors.append(f"power stage: {e}")
        self.dispatch(ev.Sampled(c.connector_id, c.purpose, meter, power, "; ".join(errors) or None))

    async def _power(self, cid: int, on: bool) -> None:
        stage = self.drivers["power"]
        try:
            await (stage.enable(cid) if on else stage.disable(cid))
        except hw.DriverError as e:
            log.error("power stage %s of connector %s failed: %s", "enable" if on else "disable", cid, e)
            self.dispatch(ev.FaultRaised("0x200002", cid))

    async def _limit(self, cid: int, power_w: float | None) -> None:
        try:
            await self.drivers["power"].set_limit(cid, power_w)
        except hw.DriverError as e:
            log.error("power stage of connector %s refused the set-point %s: %s", cid, power_w, e)

    # ------------------------------------------------------------ leaving
    async def drain(self, timeout_s: float) -> bool:
        """Wait (real time) until the transaction queue is empty or the time is up."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.core.store.count() and self.link is not None and loop.time() < end:
            self.outbox.kick()
            await asyncio.sleep(0.05)
        return self.core.store.count() == 0

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Outbox:
    """Delivers the on-disk transaction-message queue in order (R-TX 4)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._event = asyncio.Event()
        self.not_before = 0.0
        self.waiting_retry = False
        #: queued rows out as a CALL of their own (OfflineTxMsgQueueEnable false): not sent
        #: from here until that call ends (the core wakes the outbox then)
        self.beside: set[int | None] = set()

    def kick(self, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            self.not_before = self.rt.clock.monotonic() + delay_s
            self.waiting_retry = True
            self.rt._wake.set()
            return
        if self.waiting_retry and self.rt.clock.monotonic() < self.not_before:
            return
        self.waiting_retry = False
        self._event.set()

    async def run(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            while await self._deliver_one():
                pass

    def _payload_for(self, row: Any) -> dict[str, Any] | None:
        """Fill the CSMS's transaction id in; None when it can never be known."""
        payload = dict(row.payload)
        if row.action in ("StopTransaction", "MeterValues") and row.tx_local_id is not None:
            tx = self.rt.core.store.transaction(row.tx_local_id)
            if tx is None or tx.transaction_id is None:
                return None
            payload["transactionId"] = tx.transaction_id
        return payload

    async def _deliver_one(self) -> bool:
        rt = self.rt
        if rt.link is None or not rt.core.online() or self.waiting_retry:
            return False
        row = rt.core.store.first_pending()
        if row is None or row.seq in self.beside:
            return False
        payload = self._payload_for(row)
        if payload is None:
            log.error("dropping queued %s #%s: its StartTransaction never got a transaction id", row.action, row.seq)
            rt.core.store.remove(row.seq)
            return True
        link = rt.link
        try:
            reply = await link.send_call(row.action, payload)
        except Exception as e:  # noqa: BLE001
            code = rt._error_code_of(e)
            if code is None:
                if rt.link is link:  # no answer on a link that is still up: ask again later
                    delay = float(rt.core.key_int("TransactionMessageRetryInterval"))
                    log.warning("queued %s #%s not answered (%s); sending it again in %.0f s",
                                row.action, row.seq, e, delay)
                    self.kick(delay)
                else:
                    log.warning("queued %s #%s not delivered (%s); waiting for the link", row.action, row.seq, e)
                return False
            rt.dispatch(ev.TxMessageFailed(row.seq, row.action, code))
            return not self.waiting_retry
        rt.dispatch(ev.TxMessageDelivered(row.seq, row.action, row.tx_local_id, reply))
        return True


def _map_driver_event(event: hw.DriverEvent) -> object | None:
    if isinstance(event, hw.CablePlugged):
        return ev.Plugged(event.connector_id)
    if isinstance(event, hw.CableUnplugged):
        return ev.Unplugged(event.connector_id)
    if isinstance(event, hw.TagPresented):
        return ev.TagPresented(event.id_tag)
    if isinstance(event, hw.FaultRaised):
        return ev.FaultRaised(event.dtc, event.connector_id)
    if isinstance(event, hw.FaultCleared):
        return ev.FaultCleared(event.dtc, event.connector_id)
    if isinstance(event, hw.PowerFailing):
        return ev.PowerFailing()
    log.warning("unknown driver event %r ignored", event)
    return None


def reexec() -> None:
    """Restart this process in place (soft reset), with or without systemd."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
