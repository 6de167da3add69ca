"""Record fields FxA derives from parts of a request: preferences, devices, sampled users."""

from __future__ import annotations

from datetime import UTC, datetime

from .events import Device, MetricsBody, UserPreferences
from .records import ClientMetrics

_DAY_MS = 86_400_000
_DEVICE_PERIODS = (("day", _DAY_MS), ("week", 7 * _DAY_MS), ("month", 28 * _DAY_MS))


def user_preferences(prefs: UserPreferences | None) -> dict[str, bool]:
    """FxA's mapUserPreferences: each preference set, its key snake-cased, for `$append`."""
    if prefs is None:
        return {}
    return {
        name: value
        for name, value in (
            ("account_recovery", prefs.account_recovery),
            ("emails", prefs.emails),
            ("two_step_authentication", prefs.two_step_authentication),
        )
        if value is not None
    }


def sync_devices(devices: list[Device] | None, now: int) -> dict[str, int]:
    """FxA's mapSyncDevices: how many devices, and how many were used in each period."""
    if devices is None:
        return {}
    counts = {"sync_device_count": len(devices)}
    for name, period in _DEVICE_PERIODS:
        oldest = now - period
        counts[f"sync_active_devices_{name}"] = sum(
            1 for d in devices if (d.lastAccessTime or 0) >= oldest
        )
    return counts


def client_metrics(body: MetricsBody, received: int, user_agent: str) -> ClientMetrics:
    """FxA's metrics-collector-stderr.js toLoggableEvent for a sampled user's batch."""
    day = datetime.fromtimestamp(received / 1000, UTC).strftime("%Y-%m-%dT00:00:00.000Z")
    screen = body.screen
    width = screen.width if screen is not None else None
    height = screen.height if screen is not None else None
    return ClientMetrics(
        time=day,
        lang=body.lang if body.lang is not None else "unknown",
        agent=user_agent or None,
        duration=body.duration,
        context=body.context if body.context is not None else "unknown",
        service=body.service if body.service is not None else "unknown",
        events=[e.type for e in body.events],
        event_durations=[e.offset for e in body.events],
        # Truthy values only, as there ("none" included).
        screen_width=width or None,
        screen_height=height or None,
    )
