"""The command line: `serve`, `rules`, `dlq`, `forward`; consoles `tap`, `top`, `openapi`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings, override
from .errors import ConfigError, Problem, ProblemsError, summary
from .records import KINDS

if TYPE_CHECKING:
    from .dispatch.deadletter import DeadLetter, DeadLetters
    from .sinks import SinkFactory


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    server: dict[str, Any] = {}
    if getattr(args, "host", None):
        server["host"] = args.host
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    if getattr(args, "workers", None) is not None:
        if not 1 <= args.workers <= 256:
            where = f"--workers {args.workers}"
            raise ConfigError([Problem(file="", where=where, message="expected 1 to 256")])
        server["workers"] = args.workers
    return override(settings, server=server) if server else settings


def _config_name(args: argparse.Namespace) -> str:
    return str(args.config) if args.config else "config"


def _factories(args: argparse.Namespace) -> Mapping[str, SinkFactory]:
    from .sinks import FACTORIES

    found: Mapping[str, SinkFactory] | None = getattr(args, "sink_factories", None)
    return FACTORIES if found is None else found


def cmd_serve(args: argparse.Namespace) -> int:
    from .checks import prepare
    from .server import serve

    settings = _settings(args)
    # Everything checked at once, before a port is bound or a worker started.
    checked = prepare(settings, config=_config_name(args))
    serve(settings, ruleset=checked.ruleset, sink_factories=_factories(args))
    return 0


def cmd_forward(args: argparse.Namespace) -> int:
    from .bus.forward import forward
    from .checks import prepare

    settings = load_settings(args.config)
    forward_keys: dict[str, Any] = {}
    if args.host:
        forward_keys["host"] = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError([f"--port {args.port}: expected 0 to 65535"])
        forward_keys["port"] = args.port
    if forward_keys:
        settings = override(settings, forward=forward_keys)
    prepare(settings, rules=False, config=_config_name(args))
    forward(settings, args.destination, _factories(args))
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from .checks import check

    settings = _settings(args)
    paths = [Path(p) for p in args.paths] or None
    # With --config, everything the config names is checked too, as `serve` would.
    checked = check(settings, paths, files=bool(args.config), config=_config_name(args))
    for problem in checked.problems:
        print(problem, file=sys.stderr)
    if checked.errors or checked.ruleset is None:
        print(summary(checked.problems), file=sys.stderr)
        return 1
    from .checks import rule_paths

    table, registry = checked.ruleset.rules, checked.ruleset.registry
    print(
        f"ok: {table.exact_count} exact and {table.fuzzy_count} fuzzy rules,"
        f" {len(registry)} registered server event types"
        f" from {', '.join(map(str, paths or rule_paths(settings)))};"
        f" {len(checked.problems)} warning(s)"
    )
    return 0


def cmd_rules_explain(args: argparse.Namespace) -> int:
    from .checks import rule_paths
    from .ruletable import load_rules

    paths = [Path(p) for p in args.paths] or rule_paths(_settings(args))
    table = load_rules(paths)
    for name in args.event_names:
        print(table.explain(name))
    return 0


def _dlq_store(args: argparse.Namespace) -> tuple[Settings, DeadLetters]:
    from .config import deadletter_path
    from .dispatch.deadletter import DeadLetters

    settings = load_settings(args.config)
    return settings, DeadLetters(args.path or deadletter_path(settings))


def _summary(letter: DeadLetter) -> str:
    record = letter.record
    if isinstance(record, dict):
        for key in ("event_type", "event", "name"):
            if isinstance(record.get(key), str):
                return str(record[key])
    return "-"


def cmd_dlq_list(args: argparse.Namespace) -> int:
    import time

    async def run() -> None:
        _, store = _dlq_store(args)
        async with store:
            letters = await store.list(args.destination, args.reason, limit=args.limit)
            for letter in letters:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.time / 1000))
                print(
                    f"{letter.id}\t{when}\t{letter.destination}\t{letter.reason}"
                    f"\t{letter.kind}\t{_summary(letter)}"
                )
            counts = await store.counts()
        total = sum(
            n
            for (dest, reason), n in counts.items()
            if args.destination in (None, dest) and args.reason in (None, reason)
        )
        print(f"{len(letters)} shown of {total}", file=sys.stderr)

    asyncio.run(run())
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    import msgspec

    async def run() -> DeadLetter | None:
        _, store = _dlq_store(args)
        async with store:
            return await store.get(args.id)

    letter = asyncio.run(run())
    if letter is None:
        print(f"no dead letter {args.id}", file=sys.stderr)
        return 1
    print(msgspec.json.format(msgspec.json.encode(letter)).decode())
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from .dispatch.replay import ReplayResult, replay
    from .sinks import build_sinks

    async def run() -> ReplayResult:
        settings, store = _dlq_store(args)
        sinks = {sink.name: sink for sink, _ in build_sinks(settings, store, _factories(args))}
        async with store, AsyncExitStack() as stack:
            for sink in sinks.values():
                await stack.enter_async_context(sink)
            return await replay(store, sinks, args.destination, args.reason)

    result = asyncio.run(run())
    print(f"replayed {result.sent} records")
    for name, count in result.skipped.items():
        print(f"{name}: {count} records kept: not in a form that can be resent", file=sys.stderr)
    for name, count in result.refused.items():
        print(
            f"{name}: {count} records refused again: their dead letters are kept", file=sys.stderr
        )
    for name, why in result.failed.items():
        print(f"{name}: replay stopped: {why}", file=sys.stderr)
    return 0 if result.ok else 1


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    if args.destination is None and args.reason is None and not args.all:
        print("dlq purge: give --destination and/or --reason, or --all", file=sys.stderr)
        return 2

    async def run() -> int:
        _, store = _dlq_store(args)
        async with store:
            return await store.purge(args.destination, args.reason)

    print(f"purged {asyncio.run(run())} dead letters")
    return 0


def _router_url(args: argparse.Namespace, settings: Settings) -> str:
    """--url, or the router the config describes (a wildcard address means this machine)."""
    if args.url:
        return str(args.url).rstrip("/")
    host = settings.server.host
    host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    return f"http://{host}:{settings.server.port}"


def cmd_tap(args: argparse.Namespace) -> int:
    from .console.tap import tap
    from .watching.tap import TapFilter

    settings = load_settings(args.config)
    filters = TapFilter(event=args.event, kind=args.kind, sink=args.sink, rejected=args.rejected)
    return tap(_router_url(args, settings), settings.admin.token, filters, args.json)


def cmd_top(args: argparse.Namespace) -> int:
    from .console.top import top

    settings = load_settings(args.config)
    prefix = args.prefix or settings.stats.prefix or "metrics_router"
    return top(_router_url(args, settings), prefix, args.interval)


def cmd_openapi(args: argparse.Namespace) -> int:
    from .watching.openapi import document_bytes

    if args.output:
        Path(args.output).write_bytes(document_bytes())
    else:
        sys.stdout.write(document_bytes().decode())
    return 0


class _Version(argparse.Action):
    """`--version`: the version and whether the compiled modules run (imported only then)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from . import __version__, build_kind

        print(f"metrics-router {__version__} ({build_kind()})")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="metrics-router", description=__doc__)
    top.add_argument(
        "--version", action=_Version, nargs=0, help="print the version and build kind, then exit"
    )
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
    fwd.add_argument("--host", help="Dockerflow endpoints' address (overrides [forward] host)")
    fwd.add_argument(
        "--port", type=int, help="Dockerflow endpoints' port (overrides [forward] port; 0: any)"
    )
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

    tap = sub.add_parser("tap", help="stream what a running router does with each event")
    tap.add_argument("--url", help="the router (default: [server] host and port of the config)")
    tap.add_argument("--config", help="TOML config file ([admin] token, [server] host/port)")
    tap.add_argument("--json", action="store_true", help="the raw lines as NDJSON")
    tap.add_argument("--event", metavar="GLOB", help="only incoming events matching this glob")
    tap.add_argument("--kind", choices=list(KINDS), help="only records of this kind")
    tap.add_argument("--sink", metavar="NAME", help="only records for this sink")
    tap.add_argument(
        "--rejected", action="store_true", help="only refused requests (reason, field path)"
    )
    tap.set_defaults(func=cmd_tap)

    top_cmd = sub.add_parser("top", help="a live dashboard of a router's or forwarder's counters")
    top_cmd.add_argument("--url", help="the router or forwarder (default: from the config)")
    top_cmd.add_argument("--config", help="TOML config file ([server] host/port, [stats] prefix)")
    top_cmd.add_argument("--prefix", help="metric name prefix (default: [stats] prefix)")
    top_cmd.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top_cmd.set_defaults(func=cmd_top)

    spec = sub.add_parser("openapi", help="print (or write) the OpenAPI document")
    spec.add_argument("--output", "-o", help="write it here (docs/openapi.json), not stdout")
    spec.set_defaults(func=cmd_openapi)

    dlq = sub.add_parser("dlq", help="dead letters: records a destination refused or never took")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)

    def dlq_command(name: str, help: str, filters: bool = True) -> argparse.ArgumentParser:
        cmd = dlq_sub.add_parser(name, help=help)
        cmd.add_argument("--config", help="TOML config file (for [deadletter] path and sinks)")
        cmd.add_argument("--path", help="dead-letter database (overrides the config)")
        if filters:
            cmd.add_argument("--destination", help="only this destination (sink name)")
            cmd.add_argument("--reason", help="only this reason")
        return cmd

    listing = dlq_command("list", "list dead letters, oldest first")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=cmd_dlq_list)
    show = dlq_command("show", "one dead letter in full", filters=False)
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_dlq_show)
    again = dlq_command("replay", "resend through the configured sink; delete what was sent")
    again.set_defaults(func=cmd_dlq_replay)
    purge = dlq_command("purge", "delete dead letters matching the filters")
    purge.add_argument("--all", action="store_true", help="delete every dead letter")
    purge.set_defaults(func=cmd_dlq_purge)
    return top


def main(
    argv: Sequence[str] | None = None, *, sink_factories: Mapping[str, SinkFactory] | None = None
) -> int:
    """Run one command; 2 when the config, rules or files they name have problems.

    `sink_factories` replaces `router.sinks.FACTORIES` (tests run a real process with a
    test destination behind a sink name).
    """
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    args = parser().parse_args(argv)
    args.sink_factories = sink_factories
    try:
        code: int = args.func(args)
    except ProblemsError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{exc.what}: {summary(exc.problems)}", file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
