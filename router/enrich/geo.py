"""Where a client address is: country and region from a MaxMind City database.

FxA (fxa-geodb, `fxa-shared/express/geo-locate`) looks the client address up in a
GeoLite2/GeoIP2 City database and keeps only the English names; a failed lookup
sets nothing. The address itself never leaves this module: records get the names.

The database is opened once at start-up. Decoding a City record costs some 15 µs, so
lookups are cached twice (both bounded): by address, and by the database network an
answer came from, so a new address in a network seen before costs a few dictionary
probes instead of a decode (the networks of a MaxMind tree are disjoint).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

import maxminddb
import msgspec

from ..errors import ConfigError


class Location(msgspec.Struct, frozen=True, gc=False):
    """What FxA's Location keeps of a lookup: English names and the ISO country code."""

    country: str | None = None
    country_code: str | None = None
    region: str | None = None


def default_database() -> str:
    """The GeoLite2 City database shipped by the `maxminddb-geolite2` package."""
    from _maxminddb_geolite2 import geolite2_database

    path: str = geolite2_database()
    return path


def _english(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    names = node.get("names")
    name = names.get("en") if isinstance(names, dict) else None
    return name if isinstance(name, str) and name else None


def location_of(record: Any) -> Location | None:
    """FxA's Location from a City record: country, its code, the first subdivision."""
    if not isinstance(record, dict):
        return None
    country = record.get("country")
    subdivisions = record.get("subdivisions")
    region = _english(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else None
    code = country.get("iso_code") if isinstance(country, dict) else None
    found = Location(
        country=_english(country),
        country_code=code if isinstance(code, str) else None,
        region=region,
    )
    return found if found.country or found.region else None


class GeoDB:
    """A MaxMind reader plus a bounded cache of address -> Location (or None)."""

    def __init__(self, path: str = "", cache_size: int = 65536) -> None:
        self.path = path or default_database()
        self.cache_size = cache_size
        try:
            self._reader = maxminddb.open_database(self.path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError([f"geo.database: cannot open {self.path}: {exc}"]) from exc
        self._cache: dict[str, Location | None] = {}
        # Touch the search tree once now, not on the first request.
        self._reader.get("81.2.69.160")
        # (ip version, prefix length, address >> host bits) -> answer of that network.
        self._networks: dict[tuple[int, int, int], Location | None] = {}
        # Prefix lengths seen, longest first, per ip version.
        self._prefixes: dict[int, list[int]] = {4: [], 6: []}

    @property
    def database_type(self) -> str:
        return str(self._reader.metadata().database_type)

    def locate(self, address: str | None) -> Location | None:
        """The location of an address; None when it is unknown, private or not an address."""
        if not address:
            return None
        cache = self._cache
        try:
            return cache[address]
        except KeyError:
            pass
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            found = None
        else:
            found = self._by_network(ip)
        if len(cache) >= self.cache_size:
            cache.clear()  # a flood of distinct addresses: start over, stay bounded
        cache[address] = found
        return found

    def _by_network(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Location | None:
        version, bits, number = ip.version, ip.max_prefixlen, int(ip)
        networks = self._networks
        for prefix in self._prefixes[version]:
            key = (version, prefix, number >> (bits - prefix))
            if key in networks:
                return networks[key]
        record, prefix = self._reader.get_with_prefix_len(ip)
        found = location_of(record)
        if len(networks) >= self.cache_size:
            networks.clear()
            for seen in self._prefixes.values():
                seen.clear()
        networks[(version, prefix, number >> (bits - prefix))] = found
        seen = self._prefixes[version]
        if prefix not in seen:
            seen.append(prefix)
            seen.sort(reverse=True)
        return found

    def close(self) -> None:
        self._reader.close()


def is_ip(text: str) -> bool:
    """What joi's `string().ip()` accepts, near enough: an IPv4 or IPv6 address."""
    # No address is longer; long strings never reach (and never fill) the cache.
    return len(text) <= _MAX_ADDRESS and _is_ip(text)


_MAX_ADDRESS = 64


@lru_cache(maxsize=4096)
def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
