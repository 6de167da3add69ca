"""`python -m bench load`: realistic mixed load against one deployment, bounded in time and count.

Each simulated visitor runs a whole flow: `GET /metrics-flow` (the flow id it returns is
the one the later batches carry), then one to four `POST /metrics` batches of that flow's
events, and sometimes a relying party's engage ping. Requests are paced by one shared
schedule at `rate` requests/s; nothing is sent after `duration` seconds or past
`rate * duration` requests, whichever comes first.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
import msgspec

from .results import Figures
from .traffic import FLOW_QUERY, HEADERS, USER_AGENT, batch_for_flow

ENGAGE_SHARE = 0.1
CONCURRENCY = 64


class FlowAnswer(msgspec.Struct):
    flowId: str
    flowBeginTime: int
    deviceId: str


class Budget(Exception):
    """The time or request budget is spent."""


class Pacer:
    """Hands out send times `1/rate` apart; refuses past the deadline or the count."""

    def __init__(self, rate: float, duration: float) -> None:
        self.interval = 1.0 / rate
        self.start = time.monotonic()
        self.deadline = self.start + duration
        self.limit = max(1, int(rate * duration))
        self.issued = 0

    async def wait(self) -> None:
        if self.issued >= self.limit:
            raise Budget
        slot = self.start + self.issued * self.interval
        self.issued += 1
        if slot >= self.deadline:
            raise Budget
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class Load:
    def __init__(
        self,
        target: str,
        rate: float,
        duration: float,
        *,
        origin: str | None = None,
        client_id: str | None = None,
        seed: int = 1,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--target must be an http(s) URL, got {target!r}")
        self.base = target.rstrip("/")
        self.pacer = Pacer(rate, duration)
        self.origin = origin
        self.client_id = client_id
        self.rng = random.Random(seed)
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.events = 0
        self.flows = 0

    async def _send(
        self, session: aiohttp.ClientSession, method: str, url: str, **kw: object
    ) -> bytes | None:
        await self.pacer.wait()
        began = time.perf_counter()
        try:
            async with session.request(method, url, **kw) as response:  # type: ignore[arg-type]
                data = await response.read()
                self.statuses[str(response.status)] += 1
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.statuses[type(exc).__name__] += 1
            return None
        finally:
            self.latencies.append(time.perf_counter() - began)
        return data if ok else None

    async def flow(self, session: aiohttp.ClientSession) -> None:
        data = await self._send(session, "GET", f"{self.base}/metrics-flow?{FLOW_QUERY}")
        if data is None:
            return
        answer = msgspec.json.decode(data, type=FlowAnswer)
        self.flows += 1
        began = time.monotonic()
        for _ in range(self.rng.randint(1, 4)):
            count = self.rng.choice((1, 3, 5, 10, 20, 50))
            elapsed = int((time.monotonic() - began) * 1000) + 6000
            body = batch_for_flow(answer.flowId, answer.flowBeginTime, self.rng, count, elapsed)
            sent = await self._send(
                session, "POST", f"{self.base}/metrics", data=msgspec.json.encode(body)
            )
            if sent is not None:
                self.events += count
        if self.rng.random() < ENGAGE_SHARE:
            query = f"event_type=engage&uid={self.rng.getrandbits(128):032x}"
            if self.client_id:
                query += f"&service={self.client_id}"
            headers = {"Origin": self.origin} if self.origin else {}
            await self._send(session, "GET", f"{self.base}/metrics-flow?{query}", headers=headers)

    async def visitor(self, session: aiohttp.ClientSession) -> None:
        try:
            while True:
                await self.flow(session)
        except Budget:
            return

    async def run(self, concurrency: int = CONCURRENCY) -> Figures:
        timeout = aiohttp.ClientTimeout(total=10)
        headers = {**HEADERS, "User-Agent": USER_AGENT}
        connector = aiohttp.TCPConnector(limit=concurrency)
        start = time.perf_counter()
        async with aiohttp.ClientSession(
            headers=headers, timeout=timeout, connector=connector
        ) as session:
            await asyncio.gather(*(self.visitor(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        return self.figures(seconds)

    def figures(self, seconds: float) -> Figures:
        lat = sorted(self.latencies)
        requests = sum(self.statuses.values())

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

        return Figures(
            label=f"{self.flows} flows",
            seconds=round(seconds, 2),
            requests_per_s=round(requests / seconds, 1),
            events_per_s=round(self.events / seconds, 1),
            p50_ms=pct(0.50),
            p99_ms=pct(0.99),
            max_ms=round(lat[-1] * 1000, 3) if lat else None,
            events=self.events,
            requests=requests,
            errors=requests - self.statuses.get("200", 0),
            statuses=dict(sorted(self.statuses.items())),
        )


def run_load(
    target: str,
    rate: float,
    duration: float,
    *,
    origin: str | None = None,
    client_id: str | None = None,
    concurrency: int = CONCURRENCY,
) -> Figures:
    return asyncio.run(
        Load(target, rate, duration, origin=origin, client_id=client_id).run(concurrency)
    )


def report(fig: Figures) -> str:
    lines = [
        f"{fig.requests:,} requests in {fig.seconds} s ({fig.requests_per_s:,} req/s),"
        f" {fig.label}, {fig.events:,} events accepted ({fig.events_per_s:,} events/s)",
        f"latency ms: p50 {fig.p50_ms}  p99 {fig.p99_ms}  max {fig.max_ms}",
        "responses by status: "
        + ", ".join(f"{code}: {n:,}" for code, n in (fig.statuses or {}).items()),
        f"errors (anything but 200): {fig.errors:,}",
    ]
    return "\n".join(lines)
