"""Typed service settings: a TOML file, environment overrides, secrets kept apart.

Where each setting comes from, later ones winning:

1. the defaults in the models below;
2. the TOML file (``config/callcenter.toml`` unless a path is given), which ships safe
   defaults and is committed, so it must never hold a secret;
3. environment overrides ``CALLCENTER__SECTION__KEY=value``: double underscores separate
   the path, names are case-insensitive, list items are addressed by index
   (``CALLCENTER__PBX__0__HOST=10.0.0.5``); values are parsed by the model (``8080``,
   ``true``), or as JSON when they start with ``[`` or ``{``.

Secrets never come from the TOML file (one found there is an error) and never from
``CALLCENTER__`` overrides. They come from the environment:

* ``CALLCENTER_SECRET_AMI_<NODE>``: the AMI secret of PBX node ``<NODE>`` (name upper-cased,
  other characters than letters and digits as ``_``),
* ``CALLCENTER_SECRET_SESSION``: the web session signing secret,

or from a TOML secrets file named by ``CALLCENTER_SECRETS_FILE`` (``[ami] <node> = "..."``,
``session = "..."``), which must live outside the source tree and be readable by its owner
only. The environment wins over the file. The vault's keys are the vault's business
(``callcenter.cases.vault``); ``vault.key_file`` here only says where the key file is.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "CALLCENTER__"
SECRET_ENV_PREFIX = "CALLCENTER_SECRET_"
SECRETS_FILE_ENV = "CALLCENTER_SECRETS_FILE"

# The repository (or installed tree) root: config/ and migrations/ live here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "callcenter.toml"

# Keys that name a secret wherever they appear in the TOML file or a CALLCENTER__ override.
_SECRET_KEYS = frozenset(
    {"secret", "secrets", "password", "passwd", "token", "api_key", "session_secret", "keys"}
)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and where it came from."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


NodeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")]


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///var/callcenter.sqlite3"

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "use an async driver URL: sqlite+aiosqlite:///path or "
                "postgresql+asyncpg://user@host/db"
            )
        return url


class RedisSettings(_Section):
    # None: a single instance with the in-process bus and no Redis at all.
    url: str | None = None
    prefix: str = "callcenter:"


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)


class PbxNode(_Section):
    name: NodeName
    host: str
    port: int = Field(5038, ge=1, le=65535)
    username: str
    auth: Literal["md5", "plain"] = "md5"

    @property
    def secret_env(self) -> str:
        return secret_env_name(self.name)


class IvrSettings(_Section):
    menu_file: Path = Path("config/ivr.toml")
    # The AstDB key the dialplan reads (${DB(wpl/heartbeat)}) before handing a call to us.
    heartbeat_family: str = "wpl"
    heartbeat_key: str = "heartbeat"
    heartbeat_interval: float = Field(5.0, gt=0, le=60)


class VaultSettings(_Section):
    key_file: Path | None = None


class AgentsSettings(_Section):
    #: Duty roster (TOML, see config/roster.sample.toml); the wallboard shows who is
    #: rostered and not logged in. None: no roster.
    roster_file: Path | None = None
    #: Where an agent may hand a call on (queues, named services, 112...) and which consent
    #: covers showing her number there.
    transfers_file: Path = Path("config/transfers.toml")
    #: Queues every call-taker joins whatever her skills: the fallback queue (the dialplan's
    #: when the backend is down) and the callback queue, where a callback waits for an
    #: agent before her phone is rung.
    everyone_queues: tuple[str, ...] = ("wpl-fallback", "wpl-callback")


class FollowupsSettings(_Section):
    #: Units that take referrals, with their SLA hours (see config/referrals.toml).
    referral_directory: Path = Path("config/referrals.toml")
    #: SMS through Twilio, off unless that file enables it; the auth token comes from
    #: CALLCENTER_SECRET_TWILIO_AUTH_TOKEN.
    sms_file: Path = Path("config/sms.toml")
    #: The number her phone shows when the helpline calls her back: a registered neutral
    #: DID, never 1090 (whoever else sees her phone must learn nothing).
    callback_presented_number: str = Field("0000000000", pattern=r"^\+?[0-9]{4,15}$")
    #: How long a callback waits in wpl-callback for a free agent before it is retried.
    callback_queue_wait_s: int = Field(120, ge=10, le=1800)
    #: The first attempt waits this long after she hung up: she may call again herself.
    callback_first_delay_s: float = Field(120.0, ge=0, le=86400)
    callback_ring_s: int = Field(45, ge=10, le=120)
    callback_max_attempts: int = Field(3, ge=1, le=10)


class RecordingSettings(_Section):
    #: Where encrypted recordings are kept (files named by opaque ids, never numbers).
    directory: Path = Path("recordings")
    #: Recordings older than this are deleted by ``callcenter recordings purge``.
    retention_days: int = Field(180, ge=1, le=3650)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_output: bool = Field(False, alias="json")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Secrets(BaseModel):
    """Secrets, kept out of reprs and dumps by ``SecretStr``."""

    model_config = ConfigDict(frozen=True)

    # Keyed by environment-variable name, so node ``up-east`` finds ``..._AMI_UP_EAST``
    # whether the secret came from the environment or from the secrets file.
    ami: dict[str, SecretStr] = Field(default_factory=dict)
    session: SecretStr | None = None

    def ami_secret(self, node: str) -> SecretStr:
        try:
            return self.ami[secret_env_name(node)]
        except KeyError:
            raise ConfigError(
                f"no AMI secret for PBX node {node!r}: set {secret_env_name(node)} or add it "
                f"to the [ami] table of the file named by {SECRETS_FILE_ENV}"
            ) from None


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    web: WebSettings = WebSettings()
    pbx: list[PbxNode] = Field(default_factory=list)
    ivr: IvrSettings = IvrSettings()
    vault: VaultSettings = VaultSettings()
    recordings: RecordingSettings = RecordingSettings()
    followups: FollowupsSettings = FollowupsSettings()
    agents: AgentsSettings = AgentsSettings()
    log: LogSettings = LogSettings()
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)

    @model_validator(mode="after")
    def _unique_node_names(self) -> Settings:
        seen: set[str] = set()
        for index, node in enumerate(self.pbx):
            if node.name.lower() in seen:
                raise ValueError(f"pbx[{index}].name {node.name!r} is used twice")
            seen.add(node.name.lower())
        return self

    def pbx_node(self, name: str) -> PbxNode:
        for node in self.pbx:
            if node.name == name:
                return node
        raise ConfigError(f"no PBX node named {name!r} in the configuration")


def secret_env_name(node: str) -> str:
    return f"{SECRET_ENV_PREFIX}AMI_{re.sub(r'[^A-Za-z0-9]', '_', node).upper()}"


# --------------------------------------------------------------------------- loading


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the settings; raises :class:`ConfigError`."""
    env = os.environ if env is None else env
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data, origins = _read_toml(config_path, required=path is not None)
    _refuse_secrets(data, f"{config_path}")
    _apply_env_overrides(data, origins, env)
    secrets = _load_secrets(env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins, config_path)) from None
    return settings.model_copy(update={"secrets": secrets})


def _read_toml(path: Path, *, required: bool) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}, {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8")), {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _refuse_secrets(data: Any, where: str, trail: str = "") -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{trail}.{key}" if trail else str(key)
            if str(key).lower() in _SECRET_KEYS:
                raise ConfigError(
                    f"{here}: secrets must not be in {where}; "
                    f"set {SECRET_ENV_PREFIX}* in the environment or use {SECRETS_FILE_ENV} "
                    "(see callcenter/config.py)"
                )
            _refuse_secrets(value, where, here)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _refuse_secrets(value, where, f"{trail}[{index}]")


def _apply_env_overrides(
    data: dict[str, Any], origins: dict[str, str], env: Mapping[str, str]
) -> None:
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(f"{name}: empty path element (use CALLCENTER__SECTION__KEY)")
        if parts[-1] in _SECRET_KEYS:
            raise ConfigError(
                f"{name}: secrets are not settings; use {SECRET_ENV_PREFIX}* or {SECRETS_FILE_ENV}"
            )
        value = _env_value(env[name])
        _set_path(data, parts, value, name)
        origins[_location(parts)] = f"environment {name}"


def _env_value(text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


def _set_path(data: dict[str, Any], parts: list[str], value: Any, env_name: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise ConfigError(f"{env_name}: {part!r} must be a list index")
            index = int(part)
            if index > len(node):
                raise ConfigError(
                    f"{env_name}: index {index} skips entries; the list has {len(node)}"
                )
            if index == len(node):
                node.append({})
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{env_name}: {'.'.join(parts[:depth])} is not a table")
        if last:
            node[part] = value
        else:
            nxt = parts[depth + 1]
            node = node.setdefault(part, [] if nxt.isdigit() else {})


def _location(parts: list[str] | tuple[Any, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _describe(exc: ValidationError, origins: dict[str, str], path: Path) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        location = _location(tuple(error["loc"]))
        source = _origin(location, origins) or str(path)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{location or '(top level)'}: {message} (from {source})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _origin(location: str, origins: dict[str, str]) -> str | None:
    # The override that set this key, or one that set a table containing it.
    candidate = location
    while candidate:
        if candidate in origins:
            return origins[candidate]
        shorter = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", candidate)
        if shorter == candidate:
            break
        candidate = shorter
    return None


# --------------------------------------------------------------------------- secrets


def _load_secrets(env: Mapping[str, str]) -> Secrets:
    ami: dict[str, SecretStr] = {}
    session: SecretStr | None = None
    file_name = env.get(SECRETS_FILE_ENV)
    if file_name:
        file_secrets = _read_secrets_file(Path(file_name))
        for node, value in (file_secrets.get("ami") or {}).items():
            ami[secret_env_name(str(node))] = SecretStr(str(value))
        if file_secrets.get("session"):
            session = SecretStr(str(file_secrets["session"]))
    ami_prefix = f"{SECRET_ENV_PREFIX}AMI_"
    for name, value in env.items():
        if name.startswith(ami_prefix) and value:
            ami[name] = SecretStr(value)
    if env.get(f"{SECRET_ENV_PREFIX}SESSION"):
        session = SecretStr(env[f"{SECRET_ENV_PREFIX}SESSION"])
    return Secrets(ami=ami, session=session)


def _read_secrets_file(path: Path) -> dict[str, Any]:
    resolved = path.expanduser().resolve()
    if resolved.is_relative_to(PROJECT_ROOT) or _inside_git_work_tree(resolved):
        raise ConfigError(
            f"{SECRETS_FILE_ENV}: refusing {path}: it is inside a source tree, where it could "
            "be committed; keep it outside (e.g. /etc/callcenter/secrets.toml)"
        )
    try:
        info = resolved.stat()
        raw = resolved.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{SECRETS_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{SECRETS_FILE_ENV}: {path} is readable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
        )
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # Only the position: the decoder's message may quote a secret.
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ConfigError(f"{SECRETS_FILE_ENV}: {path} is not valid TOML{where}") from None
    unknown = set(data) - {"ami", "session"}
    if unknown:
        raise ConfigError(
            f"{SECRETS_FILE_ENV}: {path}: unknown entries {sorted(unknown)} "
            "(expected [ami] and session)"
        )
    if not isinstance(data.get("ami", {}), dict):
        raise ConfigError(f"{SECRETS_FILE_ENV}: {path}: ami must be a table of node = secret")
    return data


def _inside_git_work_tree(path: Path) -> bool:
    # Only the tree holding our config counts: /etc under etckeeper is a fine place.
    for parent in path.parents:
        if (parent / ".git").exists() and (parent / "config" / "callcenter.toml").exists():
            return True
    return False
