"""The `llm-oncall` command line (DESIGN.md "Command line", a contract)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from contextlib import ExitStack
from typing import IO

from config.settings import ConfigError, Settings, load_settings
from daemon import client


def _settings_or_exit(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        where = path or "environment"
        print(f"llm-oncall: invalid configuration ({where}):", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.app import Daemon, ListenError
    from daemon.logs import configure
    from daemon.store import StateFileError

    settings = _settings_or_exit(args.config)
    log = configure(settings.log.level, settings.log.format)
    log.info("starting", config=args.config or "embedded defaults", summary=settings.summary())
    try:
        daemon = Daemon(settings, log, config_path=args.config)
    except StateFileError as exc:
        print(f"llm-oncall: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(daemon.serve())
    except ListenError as exc:
        print(f"llm-oncall: {exc}", file=sys.stderr)
        return 1


def cmd_replay(args: argparse.Namespace) -> int:
    from daemon.ingest.events import InputError
    from daemon.logs import configure
    from daemon.replay import print_summary, replay

    settings = _settings_or_exit(args.config)
    configure("warning", settings.log.format)
    if args.input != "-":
        # Before the outputs are opened: a mistyped input must not truncate last run's files.
        try:
            open(args.input, "rb").close()
        except OSError as exc:
            return _os_error("read", exc)
    with ExitStack() as stack:
        sig_out: IO[bytes] | None = None
        inc_out: IO[bytes] | None = None
        try:
            if args.signals:
                sig_out = stack.enter_context(open(args.signals, "wb"))
            if args.incidents:
                inc_out = stack.enter_context(open(args.incidents, "wb"))
        except OSError as exc:
            return _os_error("write", exc)
        try:
            result = replay(args.input, settings, sig_out, inc_out)
        except InputError as exc:
            print(f"llm-oncall: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            return _os_error("read" if exc.filename == args.input else "write", exc)
    print_summary(result)
    return 0


def _os_error(verb: str, exc: OSError) -> int:
    """One line naming the path, as every CLI error (exit 1, as check-config and simulate)."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        print(f"llm-oncall: cannot {verb}: {reason}", file=sys.stderr)
    else:
        print(f"llm-oncall: cannot {verb} {exc.filename}: {reason}", file=sys.stderr)
    return 1


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.errors)} error(s)", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok — {settings.summary()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    return run_demo(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from daemon.worlds import write_world

    try:
        count = write_world(args.seed, args.days, args.out, args.truth, n_features=args.features)
    except ValueError as exc:
        print(f"llm-oncall: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # `--out - | head`: main ends quietly
    except OSError as exc:
        print(f"llm-oncall: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    truth = f", truth → {args.truth}" if args.truth else ""
    print(f"world {args.seed}: {count} events over {args.days:g} days → {args.out}{truth}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-oncall",
        description="On-call alerting for LLM-powered features: one page per real incident.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon (embedded defaults without --config)")
    run.add_argument("--config", help="YAML settings file")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("replay", help="run the pipeline over a JSONL file in simulated time")
    rep.add_argument("input", help="events, one JSON object per line (.gz ok, - for stdin)")
    rep.add_argument("--config", help="YAML settings file")
    rep.add_argument("--signals", help="write signal transitions here (JSONL)")
    rep.add_argument("--incidents", help="write the final record of every incident (JSONL)")
    rep.set_defaults(func=cmd_replay)

    demo = sub.add_parser("demo", help="synthetic traffic with injected faults, end to end")
    demo.add_argument("--hours", type=float, default=30.0, help="simulated hours of traffic")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--out", help="also write the generated events here (JSONL)")
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser(
        "simulate", help="a randomized traffic world with injected faults (evaluation corpus)"
    )
    sim.add_argument("--seed", type=int, required=True, help="the world; same seed, same bytes")
    sim.add_argument("--days", type=float, default=14.0, help="first half clean (default 14)")
    sim.add_argument("--features", type=int, default=2, help="features in the world (default 2)")
    sim.add_argument("--out", required=True, help="events JSONL (.gz compresses; - for stdout)")
    sim.add_argument("--truth", help="write the injected faults and decoys here (JSONL)")
    sim.set_defaults(func=cmd_simulate)

    chk = sub.add_parser("check-config", help="validate a settings file")
    chk.add_argument("file")
    chk.set_defaults(func=cmd_check_config)

    # Commands that talk to a running daemon (incidents, silence, test-page, routes).
    client.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ingest allocates many short-lived event objects; the default gen-0 threshold (700) runs
    # the cyclic collector thousands of times per second at full rate, about 15% of replay
    # time. Our objects hold no cycles worth collecting that often.
    gc.set_threshold(50_000, 20, 100)
    args = build_parser().parse_args(argv)
    is_client = args.func.__module__ == client.__name__
    try:
        code = client.run(args) if is_client else int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
    except BrokenPipeError:
        return _stdout_closed()
    return code


def _stdout_closed() -> int:
    """The reader of our output went away (`… | head`): stop quietly, as standard tools do.

    Python ignores SIGPIPE (the daemon's sockets need EPIPE as an error), so a tool's usual
    silent death becomes a BrokenPipeError; the rest of the output would fail again when the
    interpreter flushes stdout at exit, so it goes to /dev/null. The status is the one a shell
    reports for a tool killed by SIGPIPE (128 + 13), for scripts using `set -o pipefail`.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
