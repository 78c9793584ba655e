"""The ``evsectl`` command: run, status, sim, csms, demo, hmi, state.

``EVSECTL_CONFIG`` is the fallback for ``--config`` in every subcommand.
Exit codes: 0 ok, 1 the daemon refused or is not running (``state check``: the
database is damaged; ``state recover``: refused), 2 bad settings or usage, 3 the
daemon could not start and an operator must act (bad driver, corrupt state
database: see docs/recovery.md), 75 the daemon could not start for a reason that
may pass by itself (state file system full, read-only or failing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__, config
from .rig import client

log = logging.getLogger("evsectl")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evsectl", description="DC fast charger controller (OCPP 1.6-J)")
    p.add_argument("--config", help="settings file (default: $EVSECTL_CONFIG or /etc/evsectl/evsectl.toml)")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the charger daemon in the foreground")
    run.add_argument("--config", dest="config_sub")

    status = sub.add_parser("status", help="show the charger's state")
    status.add_argument("--config", dest="config_sub")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("--socket", help="control socket (default: from the settings)")

    sim = sub.add_parser("sim", help="simulate the outside world on a rig with mock drivers")
    sim.add_argument("--config", dest="config_sub")
    sim.add_argument("--socket", help="control socket (default: from the settings)")
    what = sim.add_subparsers(dest="sim", required=True)
    for name in ("plug", "unplug", "touch"):
        w = what.add_parser(name)
        w.add_argument("connector", type=int)
    w = what.add_parser("badge", help="present a badge to the reader")
    w.add_argument("id_tag")
    w = what.add_parser("ev", help="set the EV on a connector")
    w.add_argument("connector", type=int)
    w.add_argument("--soc", type=int)
    w.add_argument("--mac")
    w = what.add_parser("fault", help="raise (or --clear) a vendor DTC such as 0x100206")
    w.add_argument("dtc")
    w.add_argument("--clear", action="store_true")
    w.add_argument("--connector", type=int, default=0, help="0 = the whole station")
    what.add_parser("power-fail", help="cut the mains (StarCharge hold-up path)")
    w = what.add_parser("clock", help="move the simulated clock ([rig] sim_clock = true)")
    w.add_argument("action", choices=["advance"])
    w.add_argument("seconds", type=float)

    csms = sub.add_parser("csms", help="run a small local CSMS for a rig (127.0.0.1)")
    csms.add_argument("--host", default="127.0.0.1")
    csms.add_argument("--port", type=int, default=9000)

    hmi = sub.add_parser("hmi", help="run the touchscreen (a separate process: python -m hmi)")
    hmi.add_argument("--config", dest="config_sub")
    hmi.add_argument("--socket", help="the HMI socket (default: [hmi] socket from the settings)")
    hmi.add_argument("--windowed", action="store_true", help="a window instead of full screen")
    hmi.add_argument("--size", help="WxH instead of the model's resolution")

    state = sub.add_parser("state", help="check or recover the state database (docs/recovery.md)")
    state.add_argument("--config", dest="config_sub")
    state_what = state.add_subparsers(dest="state", required=True)
    for name, text in (
        ("check", "read the state database and report damage (changes nothing)"),
        ("recover", "move a damaged state database aside and salvage its readable rows (daemon stopped)"),
    ):
        w = state_what.add_parser(name, help=text)
        w.add_argument("--config", dest="config_sub", default=argparse.SUPPRESS)
        w.add_argument("--db", help="the database file (default: evsectl.sqlite in the settings' state_dir)")

    demo = sub.add_parser("demo", help="local CSMS + charger with mock hardware + one charging session")
    demo.add_argument("--forever", action="store_true", help="keep running after the session")
    demo.add_argument("--seconds", type=float, default=12.0, help="how long the demo session charges")
    return p


def _settings(args: argparse.Namespace) -> config.Settings:
    return config.load(config.config_path(getattr(args, "config_sub", None) or args.config))


def _socket(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    path = config.config_path(getattr(args, "config_sub", None) or args.config)
    if not path.exists():
        return config.default_runtime_dir() / "control.sock"
    return _settings(args).control_socket


def _sim_message(args: argparse.Namespace) -> dict[str, Any]:
    name = args.sim
    if name in ("plug", "unplug", "touch"):
        return {"cmd": name, "connector": args.connector}
    if name == "badge":
        return {"cmd": "badge", "id_tag": args.id_tag}
    if name == "ev":
        return {"cmd": "ev", "connector": args.connector, "soc": args.soc, "mac": args.mac}
    if name == "fault":
        return {"cmd": "fault", "dtc": args.dtc, "clear": args.clear, "connector": args.connector}
    if name == "power-fail":
        return {"cmd": "power-fail"}
    return {"cmd": "clock-advance", "seconds": args.seconds}


def format_status(status: dict[str, Any]) -> str:
    lines = [(f"{status['model']}  {status['box_identifier']}  link: {status['link']}  "
              f"auth: {', '.join(status['auth_options']) or '-'}  queued: {status['queued_messages']}")]
    for c in status["connectors"]:
        tx = f"tx {c['transaction_id']}" if c["transaction_id"] is not None else "no tx"
        soc = f"{c['soc']} %" if c["soc"] is not None else "-"
        err = f"  error {c['error']['error_code']} {c['error']['dtc']}" if c["error"] else ""
        lines.append(f"  connector {c['id']} ({c['type']}): {c['status']:<13} {tx:<8} "
                     f"{c['power_w'] / 1000:6.1f} kW {c['energy_wh'] / 1000:7.3f} kWh  SoC {soc}{err}")
    if status.get("storage_fault"):
        lines.append(f"  storage: state held in memory ({status['storage_fault']}); see docs/recovery.md")
    if status.get("last_error"):
        e = status["last_error"]
        lines.append(f"  last error: {e['dtc']} {e['error_code']} {e['info']} ({e['at']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except config.ConfigError as e:
        print(f"evsectl: bad settings: {e}", file=sys.stderr)
        return 2
    except client.NotRunningError as e:
        print(f"evsectl: {e}", file=sys.stderr)
        return 1
    except client.RigCommandError as e:
        print(f"evsectl: refused: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from .app import StartupError, run_daemon, setup_logging

        settings = _settings(args)
        setup_logging(settings.log_level)
        try:
            return asyncio.run(run_daemon(settings))
        except StartupError as e:
            print(f"evsectl: cannot start: {e}", file=sys.stderr)
            return e.exit_code
    if args.command == "status":
        answer = client.request(_socket(args), {"cmd": "status"})
        status = answer["status"]
        print(json.dumps(status) if args.json else format_status(status))
        return 0
    if args.command == "sim":
        client.request(_socket(args), _sim_message(args))
        return 0
    if args.command == "csms":
        from .csms.server import run_forever

        asyncio.run(run_forever(args.host, args.port, print))
        return 0
    if args.command == "hmi":
        # its own process, never imported here: the controller does not import pygame or hmi
        path = args.socket or str(_settings(args).hmi_socket)
        argv = [sys.executable, "-m", "hmi", "--socket", path]
        argv += ["--windowed"] if args.windowed else []
        argv += ["--size", args.size] if args.size else []
        os.execv(sys.executable, argv)
    if args.command == "state":
        return _state(args)
    if args.command == "demo":
        from .demo import run_demo

        return asyncio.run(run_demo(forever=args.forever, charge_s=args.seconds))
    raise AssertionError(args.command)


def _state(args: argparse.Namespace) -> int:
    from .store import recovery
    from .store.sqlite import StoreError

    settings = None
    if args.db is None or config.config_path(getattr(args, "config_sub", None) or args.config).exists():
        try:
            settings = _settings(args)
        except config.ConfigError:
            if args.db is None:
                raise
    path = Path(args.db) if args.db else settings.state_dir / "evsectl.sqlite"  # type: ignore[union-attr]
    if args.state == "check":
        report = recovery.check(path)
        print(report.text())
        return 0 if report.ok else 1
    if settings is not None:
        try:
            client.request(settings.control_socket, {"cmd": "status"})
        except (client.NotRunningError, OSError):
            pass
        else:
            print(f"evsectl: refused: the daemon is running (control socket {settings.control_socket}); "
                  "stop it first (systemctl stop evsectl)", file=sys.stderr)
            return 1
    try:
        result = recovery.recover(path)
    except StoreError as e:
        print(f"evsectl: refused: {e}", file=sys.stderr)
        return 1
    print(result.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
