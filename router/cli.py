"""The command line: `serve`, `rules check`, `rules explain`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import Settings, load_settings
from .errors import ConfigError


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if getattr(args, "host", None):
        settings.server.host = args.host
    if getattr(args, "port", None) is not None:
        settings.server.port = args.port
    if getattr(args, "workers", None) is not None:
        if not 1 <= args.workers <= 256:
            raise ConfigError([f"--workers {args.workers}: expected 1 to 256"])
        settings.server.workers = args.workers
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(_settings(args))
    return 0


def cmd_forward(args: argparse.Namespace) -> int:
    from .forward import forward

    forward(load_settings(args.config), args.destination)
    return 0


def _rule_paths(args: argparse.Namespace) -> list[Path]:
    from .app import rule_paths

    if args.paths:
        return [Path(p) for p in args.paths]
    return rule_paths(_settings(args))


def cmd_rules_check(args: argparse.Namespace) -> int:
    from .registry import check_registry, load_registry
    from .ruletable import check_rules, load_rules

    paths = _rule_paths(args)
    # (file, line, severity, what, message) from the rules and the event registry together.
    found: list[tuple[str, int | None, str, str, str]] = [
        (p.file, p.line, p.severity, p.rule, p.message) for p in check_rules(paths)
    ]
    found += [(r.file, r.line, r.severity, r.event, r.message) for r in check_registry(paths)]
    errors = sum(1 for f in found if f[2] == "error")
    for file, line, severity, what, message in found:
        where = f"{file}:{line}" if line else file
        print(f"{where}: {severity}: {what}: {message}", file=sys.stderr)
    if errors:
        print(f"{errors} error(s), {len(found) - errors} warning(s)", file=sys.stderr)
        return 1
    table = load_rules(paths)
    registry = load_registry(paths)
    print(
        f"ok: {table.exact_count} exact and {table.fuzzy_count} fuzzy rules,"
        f" {len(registry)} registered server event types"
        f" from {', '.join(map(str, paths))}; {len(found)} warning(s)"
    )
    return 0


def cmd_rules_explain(args: argparse.Namespace) -> int:
    from .ruletable import load_rules

    table = load_rules(_rule_paths(args))
    for name in args.event_names:
        print(table.explain(name))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="metrics-router", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--config", help="TOML config file (default: embedded defaults)")
    serve.add_argument("--host", help="listen address (overrides [server] host)")
    serve.add_argument("--port", type=int, help="listen port (overrides [server] port)")
    serve.add_argument("--workers", type=int, help="worker processes (overrides [server] workers)")
    serve.set_defaults(func=cmd_serve)

    fwd = sub.add_parser(
        "forward", help="deliver records from JetStream to one destination (a delivery worker)"
    )
    fwd.add_argument(
        "--destination", required=True, help="the sink to deliver through: [sinks.<name>]"
    )
    fwd.add_argument("--config", help="TOML config file with [sinks.jetstream] and the sink")
    fwd.set_defaults(func=cmd_forward)

    rules = sub.add_parser("rules", help="compile, check and explain rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="compile rule files and report every problem")
    check.add_argument("paths", nargs="*", help="rule files or directories (default: config)")
    check.add_argument("--config", help="TOML config file whose [rules] paths to check")
    check.set_defaults(func=cmd_rules_check)
    explain = rules_sub.add_parser("explain", help="which rule matches an event and what it emits")
    explain.add_argument("event_names", nargs="+", metavar="EVENT_NAME")
    explain.add_argument(
        "--rules",
        dest="paths",
        action="append",
        default=[],
        help="rule file or directory (repeatable; default: config)",
    )
    explain.add_argument("--config", help="TOML config file whose [rules] paths to use")
    explain.set_defaults(func=cmd_rules_explain)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .ruletable import RuleError

        if not isinstance(exc, RuleError):
            raise
        for p in exc.problems:
            where = f"{p.file}:{p.line}" if p.line else p.file
            print(f"{where}: {p.severity}: {p.rule}: {p.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
