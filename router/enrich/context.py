"""Metrics-context stores: where a back-end service's flow context waits for its token's events.

A stash is keyed by SHA-256 over uid + token id (base64), written add-only (an existing
stash is never overwritten) and expires after the configured TTL. Two stores: in memory
(bounded, the embedded default) and memcached (aiomcache; several servers sharded by
consistent hashing). Store trouble never fails a request: `StashService` turns every
store error into a warning, a counter and "no context".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import aiomcache
import msgspec
from uhashring import HashRing

from ..events import MetricsContext
from ..stats import Stats

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(MetricsContext).decode


def stash_key(uid: str, token_id: str) -> str:
    """FxA's key: base64(SHA-256(uid + token id))."""
    digest = hashlib.sha256()
    digest.update(uid.encode())
    digest.update(token_id.encode())
    return base64.b64encode(digest.digest()).decode()


class StoreError(Exception):
    """A store could not answer; `reason` is the counter tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ContextStore(Protocol):
    name: str

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        """Store unless the key exists; True when stored."""

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    async def healthy(self) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """A bounded in-process store: the oldest entries go first when it is full."""

    name = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def _live(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._data[key]
            return None
        return entry[1]

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        if self._live(key) is not None:
            return False
        while len(self._data) >= self.max_entries:
            self._data.popitem(last=False)
        self._data[key] = (time.monotonic() + ttl, value)
        return True

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def healthy(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._data.clear()


class MemcachedStore:
    """memcached through aiomcache; keys are spread over the servers by a consistent hash ring."""

    name = "memcached"

    def __init__(self, servers: Sequence[str], timeout: float, pool_size: int = 4) -> None:
        if not servers:
            raise ValueError("MemcachedStore needs at least one server")
        self.timeout = timeout
        self.clients: dict[str, aiomcache.Client] = {}
        for server in servers:
            host, _, port = server.rpartition(":")
            self.clients[server] = aiomcache.Client(host, int(port), pool_size=pool_size)
        self.ring = HashRing(nodes=list(self.clients))

    def server_for(self, key: str) -> str:
        node: str = self.ring.get_node(key)
        return node

    async def _call(self, op: str, key: str, *args: object) -> object:
        server = self.server_for(key)
        client = self.clients[server]
        try:
            async with asyncio.timeout(self.timeout):
                return await getattr(client, op)(key.encode(), *args)
        except TimeoutError as exc:
            # aiomcache marks a connection broken only on Exception; a cancelled command
            # goes back to the pool with its answer still unread, so drop the idle pool.
            await client.close()
            raise StoreError("timeout", f"memcached {server}: {op} timed out") from exc
        except aiomcache.ClientException as exc:
            # e.g. SERVER_ERROR out of memory (a full server started with -M)
            raise StoreError("server_error", f"memcached {server}: {op}: {exc}") from exc
        except (OSError, asyncio.IncompleteReadError, EOFError) as exc:
            raise StoreError("unavailable", f"memcached {server}: {op}: {exc!r}") from exc

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(await self._call("add", key, value, ttl))

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", key)
        return value if isinstance(value, bytes) else None

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def _version(self, client: aiomcache.Client) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                await client.version()
        except TimeoutError:
            await client.close()
            return False
        except (
            OSError,
            asyncio.IncompleteReadError,
            EOFError,
            aiomcache.exceptions.ClientException,
        ):
            return False
        return True

    async def healthy(self) -> bool:
        results = await asyncio.gather(*(self._version(c) for c in self.clients.values()))
        return all(results)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()))


class StashService:
    """Stash, read, propagate and clear metrics contexts; store errors become warnings."""

    def __init__(self, store: ContextStore, ttl: int, stats: Stats) -> None:
        self.store = store
        self.ttl = ttl
        self.stats = stats

    def _failed(self, op: str, exc: StoreError) -> None:
        self.stats.incr(
            "context.store.error",
            1,
            {"op": op, "reason": exc.reason, "store": self.store.name},
            1.0,
        )
        log.warning("metrics context %s failed, going on without it: %s", op, exc)

    async def stash(self, uid: str, token_id: str, context: MetricsContext) -> bool:
        """Add-only: True when stored, False when a stash exists or the store failed."""
        try:
            stored = await self.store.add(stash_key(uid, token_id), _encode(context), self.ttl)
        except StoreError as exc:
            self._failed("stash", exc)
            return False
        self.stats.incr("context.stash", 1, {"result": "stored" if stored else "exists"})
        return stored

    async def read(self, uid: str, token_id: str) -> MetricsContext | None:
        try:
            raw = await self.store.get(stash_key(uid, token_id))
        except StoreError as exc:
            self._failed("read", exc)
            return None
        if raw is None:
            return None
        try:
            return _decode(raw)
        except msgspec.DecodeError:
            self.stats.incr("context.store.error", 1, {"op": "read", "reason": "corrupt"}, 1.0)
            log.warning("metrics context stash for a token is not a valid context; ignored")
            return None

    async def propagate(self, uid: str, old_token_id: str, new_token_id: str) -> bool:
        """Copy the old token's stash to the new token (add-only); True when copied."""
        context = await self.read(uid, old_token_id)
        if context is None:
            self.stats.incr("context.propagate", 1, {"result": "missing"})
            return False
        stored = await self.stash(uid, new_token_id, context)
        self.stats.incr("context.propagate", 1, {"result": "copied" if stored else "not_copied"})
        return stored

    async def clear(self, uid: str, token_id: str) -> None:
        try:
            await self.store.delete(stash_key(uid, token_id))
        except StoreError as exc:
            self._failed("clear", exc)
