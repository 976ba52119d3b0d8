"""callcenter.config: TOML + environment overrides, secrets apart, errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callcenter.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, ConfigError, load_settings

NODES = """
[[pbx]]
name = "lucknow"
host = "10.1.0.5"
username = "callcenter"

[[pbx]]
name = "up-east"
host = "10.1.0.6"
port = 5039
username = "callcenter"
auth = "plain"
"""


def write(tmp_path: Path, text: str, name: str = "callcenter.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_config_loads_with_safe_defaults() -> None:
    settings = load_settings(DEFAULT_CONFIG_PATH, env={})
    assert settings.database.url.startswith("sqlite+aiosqlite://")
    assert settings.web.host == "127.0.0.1", "the console is not exposed by default"
    assert settings.redis.url is None
    assert [n.name for n in settings.pbx] == ["main"]
    assert settings.pbx[0].auth == "md5"
    assert (settings.ivr.heartbeat_family, settings.ivr.heartbeat_key) == ("wpl", "heartbeat")
    assert settings.log.json_output is False


def test_no_file_gives_defaults_only_when_none_was_asked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 9000\n" + NODES)
    settings = load_settings(
        path,
        env={
            "CALLCENTER__WEB__PORT": "8443",
            "CALLCENTER__DATABASE__URL": "postgresql+asyncpg://cc@db/cc",
            "CALLCENTER__PBX__1__HOST": "10.9.9.9",
            "callcenter__log__json": "true",
            "CALLCENTER__LOG__LEVEL": "debug",
            "UNRELATED": "x",
        },
    )
    assert settings.web.port == 8443
    assert settings.database.url == "postgresql+asyncpg://cc@db/cc"
    assert [n.host for n in settings.pbx] == ["10.1.0.5", "10.9.9.9"]
    assert settings.pbx[1].port == 5039, "fields not overridden keep the file's value"
    assert settings.log.json_output is True
    assert settings.log.level == "DEBUG"


def test_environment_can_add_a_node(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, ""),
        env={
            "CALLCENTER__PBX__0__NAME": "standby",
            "CALLCENTER__PBX__0__HOST": "10.2.0.1",
            "CALLCENTER__PBX__0__USERNAME": "cc",
        },
    )
    assert settings.pbx[0].name == "standby" and settings.pbx[0].port == 5038


def test_invalid_value_names_key_and_location(tmp_path: Path) -> None:
    path = write(tmp_path, NODES.replace("port = 5039", 'port = "fifty"'))
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "pbx[1].port: Input should be a valid integer" in message
    assert str(path) in message


def test_invalid_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, NODES), env={"CALLCENTER__PBX__0__PORT": "70000"})
    assert "pbx[0].port" in str(info.value)
    assert "environment CALLCENTER__PBX__0__PORT" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[web]\nprot = 80\n", "web.prot: unknown setting"),
        ('[log]\nlevel = "LOUD"\n', "log.level"),
        ('[database]\nurl = "postgresql://x/y"\n', "database.url"),
        (NODES.replace('auth = "plain"', 'auth = "ntlm"'), "pbx[1].auth"),
        (NODES.replace('"up-east"', '"lucknow"'), "used twice"),
        ("[web\n", "not valid TOML"),
    ],
)
def test_errors_are_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text), env={})


@pytest.mark.parametrize(
    "text",
    [
        NODES.replace('username = "callcenter"\n', 'username = "cc"\nsecret = "s3cr3t"\n', 1),
        '[web]\nsession_secret = "abc"\n',
        '[vault]\nkeys = "k1:AAAA"\n',
    ],
)
def test_secret_in_config_file_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="secrets must not be in") as info:
        load_settings(write(tmp_path, text), env={})
    for value in ("s3cr3t", "abc", "AAAA"):
        assert value not in str(info.value)


def test_secret_through_settings_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secrets are not settings"):
        load_settings(write(tmp_path, NODES), env={"CALLCENTER__PBX__0__SECRET": "x"})


def test_secrets_from_environment(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, NODES),
        env={
            "CALLCENTER_SECRET_AMI_LUCKNOW": "ami-one",
            "CALLCENTER_SECRET_AMI_UP_EAST": "ami-two",
            "CALLCENTER_SECRET_SESSION": "signing-key-42",
        },
    )
    assert settings.secrets.ami_secret("lucknow").get_secret_value() == "ami-one"
    assert settings.secrets.ami_secret("up-east").get_secret_value() == "ami-two"
    assert settings.secrets.session is not None
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "ami-one" not in shown and "signing-key-42" not in shown


def test_missing_ami_secret_says_how_to_provide_it(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, NODES), env={})
    with pytest.raises(ConfigError, match="CALLCENTER_SECRET_AMI_UP_EAST"):
        settings.secrets.ami_secret("up-east")


def test_secrets_file_outside_repo(tmp_path: Path) -> None:
    secrets = write(
        tmp_path, 'session = "s"\n[ami]\nlucknow = "from-file"\nup-east = "x"\n', "secrets.toml"
    )
    secrets.chmod(0o600)
    settings = load_settings(
        write(tmp_path, NODES, "cc.toml"),
        env={"CALLCENTER_SECRETS_FILE": str(secrets), "CALLCENTER_SECRET_AMI_UP_EAST": "env"},
    )
    assert settings.secrets.ami_secret("lucknow").get_secret_value() == "from-file"
    assert settings.secrets.ami_secret("up-east").get_secret_value() == "env", "env wins"


def test_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secrets = write(tmp_path, '[ami]\nlucknow = "x"\n', "secrets.toml")
    secrets.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings(write(tmp_path, NODES), env={"CALLCENTER_SECRETS_FILE": str(secrets)})


def test_secrets_file_inside_repo_is_refused(tmp_path: Path) -> None:
    inside = PROJECT_ROOT / "var" / f"secrets-{os.getpid()}.toml"
    inside.parent.mkdir(exist_ok=True)
    inside.write_text('[ami]\nlucknow = "x"\n')
    inside.chmod(0o600)
    try:
        with pytest.raises(ConfigError, match="inside a source tree"):
            load_settings(write(tmp_path, NODES), env={"CALLCENTER_SECRETS_FILE": str(inside)})
    finally:
        inside.unlink()


def test_broken_secrets_file_does_not_echo_its_content(tmp_path: Path) -> None:
    secrets = write(tmp_path, '[ami]\nlucknow = "hunter2\n', "secrets.toml")
    secrets.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, NODES), env={"CALLCENTER_SECRETS_FILE": str(secrets)})
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None
