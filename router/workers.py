"""Several router processes on one machine: gunicorn's master, aiohttp's uvloop workers.

`serve` with `[server] workers` > 1 runs gunicorn programmatically (no home-made
supervisor). Each worker binds its own SO_REUSEPORT socket, so the kernel spreads
connections between them. Three things gunicorn does not do for us live here:

- SIGHUP: the master forwards it to every worker, which reopens its log files and
  recompiles the rules in process, keeping the old table if the new one is broken
  (gunicorn's own HUP would start fresh workers, and a broken rule set would then stop
  them from booting). SIGUSR1 (gunicorn: reopen log files) reaches every worker too,
  which reopens its log sink's file.
- Identity: each worker claims the first free `<worker_dir>/worker-<k>` directory
  under an `fcntl` lock, so a restarted set of workers takes over every directory,
  including one whose worker died, and its spool and counters with it.
- Counters: each worker writes its counters to `worker-<k>/stats.msgpack` (atomic
  rename) every second and at exit, starting from what its predecessor in that
  directory left, so `aggregate()` over all directories only ever grows; `/__stats__`
  in any worker shows those sums (`summed_view`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
from aiohttp import web
from aiohttp.worker import GunicornUVLoopWebWorker
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from . import build_kind
from .config import Settings, override
from .handlers.admin import tap_socket_ctx
from .ruletable.ruleset import RuleSet
from .sinks import FACTORIES, SinkFactory
from .state import STATS_VIEW, TAP
from .stats import Key, Stats
from .watching.tap import SOCKET_NAME

log = logging.getLogger(__name__)

SNAPSHOT = "stats.msgpack"
SNAPSHOT_INTERVAL = 1.0


# -- worker identity ------------------------------------------------------------------------


@dataclass
class WorkerDir:
    """A claimed `worker-<k>` directory; the lock lasts as long as the process (or `release`)."""

    index: int
    path: Path
    lock: IO[bytes]

    def release(self) -> None:
        self.lock.close()


def claim_worker_dir(root: Path) -> WorkerDir:
    """Lock the first `root/worker-<k>` no live process holds (creating it if needed)."""
    root.mkdir(parents=True, exist_ok=True)
    index = 0
    while True:
        path = root / f"worker-{index}"
        path.mkdir(exist_ok=True)
        lock = open(path / ".lock", "ab")  # held for the process's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            index += 1
            continue
        return WorkerDir(index, path, lock)


def worker_dirs(root: Path) -> list[Path]:
    """Every `worker-<k>` directory under root, claimed or not, in index order."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("worker-")]
    return sorted(found, key=lambda p: int(p.name.removeprefix("worker-") or 0))


# -- counter snapshots ------------------------------------------------------------------------

Entry = tuple[str, list[tuple[str, str]], int]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Entry])


def encode_counters(counters: dict[Key, int]) -> bytes:
    return _encoder.encode([(name, list(tags), value) for (name, tags), value in counters.items()])


def read_snapshot(path: Path) -> dict[Key, int]:
    """The counters in one snapshot file; empty if there is none or it is unreadable."""
    try:
        entries = _decoder.decode(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (msgspec.DecodeError, msgspec.ValidationError, OSError) as exc:
        log.error("counter snapshot %s unreadable: %s", path, exc)
        return {}
    return {(name, tuple((k, v) for k, v in tags)): value for name, tags, value in entries}


def write_snapshot(path: Path, counters: dict[Key, int]) -> None:
    """Write atomically: readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(encode_counters(counters))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def aggregate(root: Path, live: Mapping[Path, Mapping[Key, int]] | None = None) -> dict[Key, int]:
    """The sum of every worker directory's counters (`/__stats__` with workers > 1).

    Directories whose worker has exited keep their last snapshot, and the next worker
    to claim one starts from it, so the sums never go down. `live` gives the current
    counters of some directories (the calling worker's own) in place of their snapshot.
    """
    total: dict[Key, int] = {}
    for path in worker_dirs(root):
        counters = live.get(path) if live else None
        if counters is None:
            counters = read_snapshot(path / SNAPSHOT)
        for key, value in counters.items():
            total[key] = total.get(key, 0) + value
    return total


def aggregate_stats(root: Path, live: Mapping[Path, Mapping[Key, int]] | None = None) -> Stats:
    """`aggregate` as a Stats object, so any exporter of a Stats can show the sums."""
    stats = Stats()
    stats.counters = aggregate(root, live)
    return stats


def summed_view(stats: Stats, claimed: WorkerDir, root: Path) -> Callable[[], Awaitable[Stats]]:
    """What `/__stats__` shows in a worker: every worker's counters summed, its own gauges.

    Its own counters are taken live, not from its snapshot, so they are current; the
    others' are at most one snapshot interval old. Nothing is written here: a write
    racing the periodic one could land after the final snapshot with older numbers.
    Gauges (queue depths) belong to one process and carry a `worker` label.
    """
    worker = ("worker", str(claimed.index))

    async def view() -> Stats:
        live = {claimed.path: dict(stats.counters)}
        summed = await asyncio.to_thread(aggregate_stats, root, live)
        summed.gauges = {
            (name, tuple(sorted((*tags, worker)))): read
            for (name, tags), read in stats.gauges.items()
        }
        return summed

    return view


def snapshot_ctx(stats: Stats, path: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that writes `stats` to `path` every second and once at exit."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def loop() -> None:
            # Not cancelled at exit: a write in its thread would outlive the cancel and
            # could land after the final one. Asked to stop, it writes once more and ends;
            # `last` is read before the counters are copied, so a stop that comes during a
            # periodic write still gets a write of its own.
            last = False
            while not last:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SNAPSHOT_INTERVAL)
                last = stop.is_set()
                try:
                    await asyncio.to_thread(write_snapshot, path, dict(stats.counters))
                except OSError as exc:
                    log.error("counter snapshot %s not written: %s", path, exc)

        task = asyncio.create_task(loop())
        yield
        stop.set()
        await task

    return ctx


WORKER = web.AppKey("worker", WorkerDir)


def worker_app(
    settings: Settings,
    ruleset: RuleSet | None = None,
    sink_factories: Mapping[str, SinkFactory] = FACTORIES,
) -> web.Application:
    """One worker's application: claim a directory, resume its counters, build the app."""
    from .app import make_app
    from .server import settle_heap

    claimed = claim_worker_dir(Path(settings.server.worker_dir))
    stats = Stats(settings.stats.default_sample_rate)
    stats.counters.update(read_snapshot(claimed.path / SNAPSHOT))
    # The spool lives in the claimed directory, so that whichever worker claims it next
    # replays what this one left.
    mine = override(settings, spool={"path": str(claimed.path / "spool")})
    app = make_app(mine, stats=stats, ruleset=ruleset, sink_factories=sink_factories)
    app[WORKER] = claimed
    app[STATS_VIEW] = summed_view(stats, claimed, Path(settings.server.worker_dir))
    # First in, last out: the final snapshot is taken after the sinks have drained.
    app.cleanup_ctx.insert(0, snapshot_ctx(stats, claimed.path / SNAPSHOT))
    # One tap sees every worker: each serves its own on a socket in its directory.
    app[TAP].worker = claimed.index
    app.cleanup_ctx.append(
        tap_socket_ctx(claimed.path / SOCKET_NAME, Path(settings.server.worker_dir))
    )

    async def announce(app: web.Application) -> None:
        log.info("worker %d (pid %d) ready in %s", claimed.index, os.getpid(), claimed.path)

    app.on_startup.append(announce)
    settle_heap()  # as a single router does: GC thresholds, malloc
    return app


# -- gunicorn -----------------------------------------------------------------------------------


class RouterWorker(GunicornUVLoopWebWorker):
    def init_signals(self) -> None:
        super().init_signals()
        # Until the app installs its reload handler, a HUP must not kill the worker
        # (the default action); the master forwards HUPs to workers at any time.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


class RouterArbiter(Arbiter):  # type: ignore[misc]
    def handle_hup(self) -> None:
        """Forward to the workers: each reloads its rules and keeps them if the new are bad."""
        self.log.info("SIGHUP: asking %d workers to reload their rules", len(self.WORKERS))
        self.kill_workers(signal.SIGHUP)


# sun_path is 108 bytes with its terminating NUL.
_MAX_SOCKET_PATH = 107


def control_socket_options(worker_dir: Path, known: Container[str]) -> dict[str, Any]:
    """gunicorn >= 25's control socket (`gunicornc`): one per router, in its worker_dir.

    gunicorn's default is one per user ($XDG_RUNTIME_DIR or ~/.gunicorn), which every
    router on the host would share, and which is not writable in a locked-down image.
    """
    if "control_socket" not in known:  # gunicorn < 25 has none
        return {}
    path = worker_dir.resolve() / "gunicorn.ctl"
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        log.info("gunicorn control socket disabled: %s is too long for a socket path", path)
        return {"control_socket_disable": True}
    return {"control_socket": str(path)}


class RouterApplication(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        settings: Settings,
        ruleset: RuleSet | None,
        sink_factories: Mapping[str, SinkFactory],
    ) -> None:
        self.settings = settings
        self.ruleset = ruleset
        self.sink_factories = sink_factories
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        options: dict[str, Any] = {
            "bind": [f"{server.host}:{server.port}"],
            "workers": server.workers,
            "worker_class": f"{__name__}.RouterWorker",
            "reuse_port": True,
            # Requests get shutdown_timeout (aiohttp's share of this), then the sinks
            # drain for up to shutdown_timeout again before the master kills a worker.
            "graceful_timeout": math.ceil(2 * server.shutdown_timeout_seconds + 5),
            "timeout": 60,
            "accesslog": None,
            "loglevel": "info",
            "proc_name": "metrics-router",
            "when_ready": self._when_ready,
        }
        options.update(control_socket_options(Path(server.worker_dir), self.cfg.settings))
        for key, value in options.items():
            self.cfg.set(key, value)

    def _when_ready(self, arbiter: Arbiter) -> None:
        server = self.settings.server
        log.info(
            "metrics-router listening on http://%s:%d (%d workers, %s)",
            server.host,
            server.port,
            server.workers,
            build_kind(),
        )

    def load(self) -> Callable[[], Awaitable[web.Application]]:
        settings, ruleset, factories = self.settings, self.ruleset, self.sink_factories

        async def factory() -> web.Application:
            return worker_app(settings, ruleset, factories)

        return factory

    def run(self) -> None:
        RouterArbiter(self).run()


def serve_workers(
    settings: Settings,
    *,
    ruleset: RuleSet | None = None,
    sink_factories: Mapping[str, SinkFactory] = FACTORIES,
) -> None:
    """Run `[server] workers` router processes on one port until SIGTERM/SIGINT."""
    from .checks import prepare

    # Fail here, once, with every problem listed (StartupError), rather than in every
    # worker's boot after the port is already announced. The workers are forked from
    # this process and share the rule set read here.
    if ruleset is None:
        ruleset = prepare(settings).ruleset
    RouterApplication(settings, ruleset, sink_factories).run()
