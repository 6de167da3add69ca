"""`python -m bench`: every scenario, a table, targets; `python -m bench load`: load-test a URL."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .runner import ALL, run_all


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    top.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    top.add_argument("--only", action="append", choices=ALL, help="run this scenario (repeatable)")
    top.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    top.add_argument("--plot", type=Path, metavar="FILE.png", help="draw throughput and latency")
    top.add_argument(
        "--smoke", action="store_true", help="a few seconds in all; targets printed, not judged"
    )
    sub = top.add_subparsers(dest="command")
    load = sub.add_parser("load", help="realistic mixed load against one deployment")
    load.add_argument("--target", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    load.add_argument("--rate", type=float, required=True, help="requests per second")
    load.add_argument("--duration", type=float, required=True, help="seconds; stops by itself")
    load.add_argument("--concurrency", type=int, default=64, help="simultaneous visitors")
    load.add_argument("--origin", help="Origin header for engage pings (an allowed origin)")
    load.add_argument("--client-id", help="OAuth client id (service) for engage pings")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "load":
        from .loadgen import report, run_load

        if args.rate <= 0 or args.duration <= 0:
            print("--rate and --duration must be positive", file=sys.stderr)
            return 2
        try:
            fig = run_load(
                args.target,
                args.rate,
                args.duration,
                origin=args.origin,
                client_id=args.client_id,
                concurrency=args.concurrency,
            )
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(report(fig))
        return 0 if not fig.errors else 1

    from .results import format_table, format_targets, plot, write_json

    duration = min(args.duration, 1.0) if args.smoke else args.duration
    report_ = run_all(args.only or ALL, duration, args.smoke)
    if args.smoke:
        for target in report_.targets:
            target.met = None
    print(format_table(report_.scenarios))
    print()
    print(format_targets(report_.targets))
    if args.smoke:
        print("(smoke run: figures are not meaningful, so targets are not judged)")
    if args.json:
        write_json(report_, args.json)
        print(f"figures written to {args.json}")
    if args.plot:
        plot(report_.scenarios, args.plot)
        print(f"plot written to {args.plot}")
    failed = [s.scenario for s in report_.scenarios if s.skipped and s.skipped.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
