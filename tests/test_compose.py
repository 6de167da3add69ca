"""docker-compose.yml and the Dockerfile: structure, settings, health, mounts.

Static checks, quick enough for every test run; scripts/compose-test.sh (run by .ci/run)
builds the image and starts the topology for real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from router.bus.forward import Forwarder, build_destination
from router.config import Settings, deadletter_path, load_settings
from router.config.sections import ENV_PREFIX, env_keys
from router.dispatch.deadletter import DeadLetters

ROOT = Path(__file__).resolve().parents[1]
KNOWN = {env for env, _, _ in env_keys(Settings)}
DEFAULT = re.compile(r"\$\{(\w+)(?::[-?]([^}]*))?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    # ${VAR:?message} / ${VAR:-default}: a digit string stands in for ints and strings alike.
    return {k: DEFAULT.sub(lambda m: "1234567890123456", str(v)) for k, v in env.items()}


def test_services_and_healthchecks() -> None:
    services = compose()["services"]
    assert {"router", "nats", "memcached", "forward-amplitude", "forward-vwo"} <= set(services)
    router = services["router"]
    assert int(environment(router)["METRICS_ROUTER_SERVER_WORKERS"]) > 1
    assert any("/__heartbeat__" in part for part in router["healthcheck"]["test"])
    nats = services["nats"]
    assert "-js" in nats["command"] and "-sd" in nats["command"]
    assert any(v.endswith(":/data") for v in nats["volumes"])
    for name, destination in (("forward-amplitude", "amplitude"), ("forward-vwo", "vwo")):
        assert services[name]["command"] == ["forward", "--destination", destination]
        assert environment(services[name])["METRICS_ROUTER_SINKS_JETSTREAM_SERVERS"]
    for service in services.values():
        if "depends_on" in service:
            assert set(service["depends_on"]) <= set(services)


def test_every_variable_is_a_setting_the_router_reads() -> None:
    unknown: list[str] = []
    for name, service in compose()["services"].items():
        for env in environment(service):
            if not env.startswith(ENV_PREFIX) or env in KNOWN:
                continue
            unknown.append(f"{name}: {env}")
    assert not unknown, f"not settings the router reads: {unknown}"


def test_the_environment_loads() -> None:
    """Each service's environment loads; each forwarder builds its sink and consumer."""
    services = compose()["services"]
    loaded = {}
    for name in ("router", "forward-amplitude", "forward-vwo"):
        loaded[name] = load_settings(environ=environment(services[name]))
        jetstream = loaded[name].sinks.jetstream
        assert jetstream is not None and jetstream.servers == ["nats://nats:4222"]
    assert loaded["router"].server.workers == 2
    assert loaded["router"].server.host == "0.0.0.0"
    assert loaded["router"].context.memcached == ["memcached:11211"]
    for name, destination in (("forward-amplitude", "amplitude"), ("forward-vwo", "vwo")):
        settings = loaded[name]
        assert settings.deadletter.path.startswith("/var/lib/metrics-router/")
        conf = settings.sinks.jetstream
        assert conf is not None
        sink = build_destination(settings, destination)
        store = DeadLetters(deadletter_path(settings))
        forwarder = Forwarder(conf, destination, sink, deadletters=store)
        assert set(forwarder.kinds.values()) == {destination}


def variable(value: object) -> str:
    match = DEFAULT.fullmatch(str(value))
    assert match is not None, f"{value!r} is not a single ${{VAR}}"
    return match[1]


def test_insert_ids_and_message_ids_share_one_key() -> None:
    """The publisher's id_key and the Amplitude hmac_key come from one variable."""
    env = compose()["services"]["forward-amplitude"]["environment"]
    router = compose()["services"]["router"]["environment"]
    names = {
        variable(source[key])
        for source, key in (
            (env, "METRICS_ROUTER_SINKS_AMPLITUDE_HMAC_KEY"),
            (env, "METRICS_ROUTER_SINKS_JETSTREAM_ID_KEY"),
            (router, "METRICS_ROUTER_SINKS_JETSTREAM_ID_KEY"),
        )
    }
    assert names == {"ID_KEY"}


def test_every_service_has_a_healthcheck_on_a_port_it_serves() -> None:
    services = compose()["services"]
    for name in ("forward-amplitude", "forward-vwo"):
        service = services[name]
        test = service["healthcheck"]["test"]
        port = environment(service)["METRICS_ROUTER_FORWARD_PORT"]
        # The forwarder's own Dockerflow port, not the router's 8080 (the image default).
        assert test[-2:] == ["/__heartbeat__", port] and port != "8080"
    assert all("healthcheck" in service for service in services.values())


def test_bind_mounts_name_files_the_repository_has() -> None:
    """A missing host file would be created as a directory by Docker (and break the sink)."""
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = DEFAULT.sub(lambda m: m[2] or "", volume.split(":")[0])
            if source.startswith((".", "/")):
                assert (ROOT / source).is_file(), f"{name}: {volume}: no {source}"


def test_test_services_stay_out_of_the_production_file() -> None:
    override = yaml.safe_load((ROOT / "tests/compose/docker-compose.test.yml").read_text())
    extra = set(override["services"]) - set(compose()["services"])
    assert extra == {"fakes"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The classic builder refuses a COPY wildcard that matches nothing (version.jso[n]).
    assert not re.search(r"^COPY .*[\[*?]", dockerfile, re.M)
    assert re.search(r"^ARG BASE_IMAGE=\S+", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
