from __future__ import annotations

from pathlib import Path

import pytest

from router.config import enabled_sinks, load_settings
from router.errors import ConfigError


def test_embedded_default() -> None:
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.flow.expiry_seconds == 7200
    assert settings.flow.max_event_offset_seconds == 172800
    assert [name for name, _ in enabled_sinks(settings)] == ["log"]
    assert settings.sinks.log is not None and settings.sinks.log.path == "-"


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(
        """
[server]
port = 9000
[flow]
key = "from-file"
allowed_origins = ["https://a.example"]
clients = { "0123456789abcdef" = "Monitor" }
[sinks.log]
path = "/tmp/out.log"
logger = "fxa-content-server"
"""
    )
    settings = load_settings(
        path,
        environ={
            "METRICS_ROUTER_FLOW_KEY": "from-env",
            "METRICS_ROUTER_SERVER_PORT": "9100",
            "METRICS_ROUTER_FLOW_ALLOWED_ORIGINS": "https://b.example,https://c.example",
            "PATH": "/bin",
        },
    )
    assert settings.flow.key == "from-env"
    assert settings.server.port == 9100
    assert settings.flow.allowed_origins == ["https://b.example", "https://c.example"]
    assert settings.flow.clients == {"0123456789abcdef": "Monitor"}
    assert settings.sinks.log is not None and settings.sinks.log.logger == "fxa-content-server"


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(
        """
[server]
port = "eighty"
colour = "blue"
[flow]
expiry_seconds = -5
clients = { "nothex" = "x" }
[nonsense]
a = 1
"""
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"METRICS_ROUTER_SERVER_HOSTNAME": "x"})
    text = "\n".join(map(str, info.value.problems))
    for needle in (
        "server.port",
        "server.colour: unknown key",
        "flow.expiry_seconds",
        "flow.clients",
        "nonsense: unknown key",
        "METRICS_ROUTER_SERVER_HOSTNAME is not a known setting",
    ):
        assert needle in text, text
    assert len(info.value.problems) == 6


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text("[server\nport=1")
    with pytest.raises(ConfigError, match="router.toml"):
        load_settings(path, environ={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings("/nonexistent/router.toml", environ={})


def test_disabled_sink(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text("[sinks.log]\nenabled = false\n[sinks.memory]\n")
    settings = load_settings(path, environ={})
    assert [name for name, _ in enabled_sinks(settings)] == ["memory"]
