"""docker-compose.yml, .env and the settings must agree: no Docker engine runs
here, so this is what keeps the compose path from drifting."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from sandbox.settings import PROJECT_DIR
from sandbox.settings import SandboxSettings as Settings

COMPOSE = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
ENV = dict(
    line.split("=", 1) for line in (PROJECT_DIR / ".env").read_text().splitlines()
    if line and not line.startswith("#")
)
SETTINGS = {f"AMIVONO_{f.name.upper()}": f for f in fields(Settings)}
SERVICES = COMPOSE["services"]
# Values that differ on purpose between compose and the bare-metal defaults.
COMPOSE_ONLY = {"AMIVONO_METRICS_PORT"}


def env_of(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def test_the_services_are_all_there():
    assert set(SERVICES) == {"postgres", "gateway", "carrier", "api", "dispatcher", "fastagi"}
    for name, service in SERVICES.items():
        assert "healthcheck" in service, name


def test_every_amivono_variable_is_a_setting():
    names = set(ENV) | {k for s in SERVICES for k in env_of(s)}
    unknown = {n for n in names if n.startswith("AMIVONO_") and n not in SETTINGS}
    assert not unknown


def test_env_file_agrees_with_the_settings_defaults():
    defaults = Settings()
    for name, value in ENV.items():
        if name.startswith("AMIVONO_") and name not in COMPOSE_ONLY:
            assert value == str(getattr(defaults, SETTINGS[name].name)), name


def test_every_referenced_variable_is_in_env():
    text = (PROJECT_DIR / "docker-compose.yml").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= set(ENV)


@pytest.mark.parametrize("service", ["gateway", "carrier", "api"])
def test_ports_are_published_on_loopback_from_settings(service):
    for mapping in SERVICES[service]["ports"]:
        host_ip, host, container = mapping.split(":")
        assert host_ip == "127.0.0.1"
        assert host == container and re.fullmatch(r"\$\{AMIVONO_\w+_PORT\}", host)
        assert host[2:-1] in SETTINGS


def test_the_sounds_volume_is_shared_at_the_settings_path():
    path = "${AMIVONO_SOUNDS_DIR}"
    assert ENV["AMIVONO_SOUNDS_DIR"] == Settings().sounds_dir
    for service in ("api", "gateway", "fastagi"):
        mounts = [v.split(":")[:2] for v in SERVICES[service]["volumes"]]
        assert ["sounds", path] in mounts, service
    assert "sounds" in COMPOSE["volumes"]


def test_containers_reach_each_other_by_service_name():
    env = env_of("dispatcher")
    assert env["AMIVONO_ARI_URL"] == "http://gateway:${AMIVONO_HTTP_PORT}/ari"
    assert env["AMIVONO_TRUNK_HOST"] == "carrier" and env["AMIVONO_FASTAGI_HOST"] == "fastagi"
    assert env["AMIVONO_DATABASE_URL"].startswith("postgresql://postgres:${POSTGRES_PASSWORD}@postgres")
    for service in ("gateway", "carrier", "api", "dispatcher", "fastagi"):
        assert env_of(service)["AMIVONO_ARI_PASSWORD"] == "${AMIVONO_ARI_PASSWORD}"


def test_asterisk_image_uses_the_same_templates_and_needs_no_venv():
    dockerfile = (PROJECT_DIR / "asterisk" / "Dockerfile").read_text()
    assert "FROM debian:sid" in dockerfile and "asterisk" in dockerfile
    assert "COPY asterisk/templates" in dockerfile and "COPY dialplan" in dockerfile
    copied = [m for line in re.findall(r"^COPY (.+) \S+/$", dockerfile, re.M)
              for m in line.split() if m.endswith(".py")]
    assert copied
    copied_modules = {m.removeprefix("asterisk/").removesuffix(".py").replace("/", ".")
                      for m in copied}
    for module in copied:
        tree = ast.parse((PROJECT_DIR / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
                for alias in node.names:
                    top = (node.module if isinstance(node, ast.ImportFrom) else alias.name)
                    # The standard library, or a module copied into the image.
                    assert (top.split(".")[0] in sys.stdlib_module_names
                            or top in copied_modules), (module, top)
    for service in ("gateway", "carrier"):
        assert SERVICES[service]["build"]["dockerfile"] == "asterisk/Dockerfile"
        assert SERVICES[service]["command"] == [service]


def test_the_entry_point_renders_every_template(tmp_path, monkeypatch):
    from sandbox.instances import Instance, Runtime

    monkeypatch.setattr(Runtime, "moddir", lambda self: "/usr/lib/asterisk/modules")
    settings = Settings(run_dir=str(tmp_path), asterisk_bind="0.0.0.0", trunk_host="carrier",
                        gateway_host="gateway", fastagi_host="fastagi")
    for name in ("gateway", "carrier"):
        inst = Instance(name, settings, Runtime(""))
        inst.write_configs()
        etc = Path(inst.dir) / "etc"
        text = "\n".join(p.read_text() for p in etc.glob("*.conf"))
        assert "{{" not in text
    gateway_etc = tmp_path / "gateway" / "etc"
    assert "agi://fastagi:" in (gateway_etc / "extensions.conf").read_text()
    assert "contact = sip:carrier:" in (gateway_etc / "pjsip.conf").read_text()
