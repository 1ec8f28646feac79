"""Settings from the environment (service/settings.py): types come from the
defaults, unknown variables are ignored, bad values are named, and `describe`
shows no secret."""

from __future__ import annotations

import dataclasses
import os

import pytest

from service.settings import Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment: tests/conftest.py sets AMIVONO_* for the other suites."""
    for name in list(os.environ):
        if name.startswith("AMIVONO_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_no_variables_give_the_defaults(env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env() == Settings()


def test_types_follow_the_defaults(env: pytest.MonkeyPatch) -> None:
    env.setenv("AMIVONO_API_PORT", "9090")
    env.setenv("AMIVONO_SMS_PER_SECOND", "2.5")
    env.setenv("AMIVONO_MINUTE_SECONDS", "1")  # a float setting written as an integer
    env.setenv("AMIVONO_DONGLE_DEVICE", "dongle1")
    env.setenv("AMIVONO_DATABASE_URL", "postgresql://u@db:5432/x")
    s = Settings.from_env()
    assert s.api_port == 9090 and type(s.api_port) is int
    assert s.sms_per_second == 2.5 and type(s.sms_per_second) is float
    assert s.minute_seconds == 1.0 and type(s.minute_seconds) is float
    assert s.dongle_device == "dongle1"
    assert s.database_url == "postgresql://u@db:5432/x"


def test_every_setting_is_read_by_its_name(env: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        kind = type(f.default)
        value: object = {int: 7, float: 0.25, str: "x-value"}[kind]
        env.setenv(f"AMIVONO_{f.name.upper()}", str(value))
    s = Settings.from_env()
    for f in dataclasses.fields(Settings):
        assert getattr(s, f.name) == {int: 7, float: 0.25, str: "x-value"}[type(f.default)]
        assert type(getattr(s, f.name)) is type(getattr(defaults, f.name)), f.name


def test_unknown_and_unprefixed_variables_are_ignored(env: pytest.MonkeyPatch) -> None:
    env.setenv("AMIVONO_NO_SUCH_SETTING", "x")
    env.setenv("API_PORT", "1")
    env.setenv("amivono_api_port", "2")
    assert Settings.from_env() == Settings()


@pytest.mark.parametrize(("name", "raw"), [("API_PORT", "eighty"), ("API_PORT", "80.5"),
                                           ("API_PORT", ""), ("SMS_PER_SECOND", "fast")])
def test_a_bad_number_names_the_variable(env: pytest.MonkeyPatch, name: str, raw: str) -> None:
    env.setenv(f"AMIVONO_{name}", raw)
    with pytest.raises(ValueError, match=f"AMIVONO_{name}") as caught:
        Settings.from_env()
    assert repr(raw) in str(caught.value)


def test_public_url() -> None:
    assert Settings(public_base_url="https://api.example.com").public_url(
        "/messages/sms/1") == "https://api.example.com/messages/sms/1"
    assert Settings(public_base_url="https://api.example.com/").public_url(
        "/messages/sms/1") == "https://api.example.com/messages/sms/1"
    assert Settings(public_base_url="https://example.com/gw/").public_url(
        "/files") == "https://example.com/gw/files"


def test_sounds_dir_for_asterisk() -> None:
    assert Settings(sounds_dir="/a").sounds_dir_for_asterisk == "/a"
    assert Settings(sounds_dir="/a", asterisk_sounds_dir="/b").sounds_dir_for_asterisk == "/b"


def described(settings: Settings) -> dict[str, str]:
    return {name: value for name, value, _ in settings.describe()}


def test_describe_lists_every_setting_with_its_doc() -> None:
    rows = Settings().describe()
    assert [name for name, _, _ in rows] == [
        f"AMIVONO_{f.name.upper()}" for f in dataclasses.fields(Settings)]
    assert all(doc for _, _, doc in rows)
    assert described(Settings(api_port=9))["AMIVONO_API_PORT"] == "9"


def test_describe_hides_passwords() -> None:
    s = Settings(ari_password="ari-s3cret", ami_password="ami-s3cret")
    shown = described(s)
    assert shown["AMIVONO_ARI_PASSWORD"] == "***"
    assert shown["AMIVONO_AMI_PASSWORD"] == "***"
    assert not any("s3cret" in value for value in shown.values())


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://amivono:pg-s3cret@db:5432/amivono",
         "postgresql://amivono:***@db:5432/amivono"),
        ("postgresql://amivono:p@ss:w0rd-s3cret@db/amivono", "postgresql://amivono:***@db/amivono"),
        ("postgresql://amivono@db/amivono", "postgresql://amivono@db/amivono"),
        ("postgresql://db/amivono", "postgresql://db/amivono"),
    ],
)
def test_describe_hides_dsn_passwords(dsn: str, shown: str) -> None:
    assert described(Settings(database_url=dsn))["AMIVONO_DATABASE_URL"] == shown


def test_describe_hides_a_password_in_any_url() -> None:
    shown = described(Settings(ari_url="http://user:url-s3cret@pbx:8088/ari"))
    assert shown["AMIVONO_ARI_URL"] == "http://user:***@pbx:8088/ari"


def test_describe_only_own_lists_a_subclass_s_additions() -> None:
    @dataclasses.dataclass(frozen=True)
    class More(Settings):
        extra: int = dataclasses.field(default=1, metadata={"doc": "An extra."})
        extra_password: str = dataclasses.field(default="x-s3cret", metadata={"doc": "Secret."})

    assert More().describe(only_own=True) == [
        ("AMIVONO_EXTRA", "1", "An extra."), ("AMIVONO_EXTRA_PASSWORD", "***", "Secret.")]
