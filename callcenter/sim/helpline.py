"""A simulated PBX set up with the product's own Asterisk files.

``helpline_config()`` reads ``dialplans/queues_1090.conf`` and
``dialplans/extensions_1090.conf`` (the files shipped to a real Asterisk 22),
so end-to-end tests and ``make demo`` exercise the very dialplan and queue
settings production runs. Queue members are dynamic there (the backend adds
them with QueueAdd); only the endpoints are declared here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from callcenter.pbx import asterisk_conf

from .config import Endpoint, FeaturesConfig, ManagerUser, PhoneBehaviour, QueueConfig, SimConfig

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"

#: The carrier trunk every inbound caller arrives on (context wpl-inbound).
CARRIER = "carrier"
#: The outbound trunk the dialplan dials (emergency destination, callbacks).
OUTBOUND_TRUNK = "wpl-carrier"


@dataclass(frozen=True, slots=True)
class SimAgent:
    """An agent's softphone: PJSIP endpoint name, display name, how it answers."""

    endpoint: str
    name: str
    answer_after: float | None = 2.0
    hangup_after: float | None = None


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("yes", "true", "1", "on")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def shipped_queues(path: Path | None = None) -> list[QueueConfig]:
    conf = asterisk_conf.load(path or DIALPLANS / "queues_1090.conf")
    queues = []
    for name in conf.section_names():
        if name == "general":
            continue
        get = lambda option, n=name: conf.resolved_get(n, option)  # noqa: E731
        queues.append(
            QueueConfig(
                name,
                strategy=get("strategy") or "ringall",
                timeout=_int(get("timeout"), 15),
                retry=_int(get("retry"), 5),
                wrapuptime=_int(get("wrapuptime"), 0),
                weight=_int(get("weight"), 0),
                ringinuse=_bool(get("ringinuse"), True),
                joinempty=get("joinempty") or "yes",
                leavewhenempty=get("leavewhenempty") or "no",
                reportholdtime=_bool(get("reportholdtime"), False),
                autopause=get("autopause") or "no",
                maxlen=_int(get("maxlen"), 0),
                servicelevel=_int(get("servicelevel"), 0),
            )
        )
    return queues


def shipped_features(path: Path | None = None) -> FeaturesConfig:
    """features.conf as shipped (``dialplans/features_1090.conf``), else Asterisk's defaults.

    Without a shipped ``[featuremap] atxfer`` code, Asterisk (and so the simulator)
    refuses AMI Atxfer: "No attended transfer feature code found".
    """
    path = path or DIALPLANS / "features_1090.conf"
    features = FeaturesConfig()
    if not path.exists():
        return features
    conf = asterisk_conf.load(path)
    names = conf.section_names()

    def get(section: str, option: str) -> str | None:
        return conf.resolved_get(section, option) if section in names else None

    for option in ("blindxfer", "disconnect", "atxfer"):
        value = get("featuremap", option)
        if value is not None:
            setattr(features, option, value.strip())
    for option in ("atxferabort", "atxfercomplete", "atxferthreeway", "atxferswap"):
        value = get("general", option)
        if value is not None:
            setattr(features, option, value.strip())
    # features.conf gives these in seconds (transferdigittimeout, atxfernoanswertimeout...)
    for option in ("atxfernoanswertimeout", "atxferloopdelay", "transferdigittimeout"):
        value = get("general", option)
        if value is not None and value.strip().replace(".", "", 1).isdigit():
            setattr(features, option, float(value))
    retries = get("general", "atxfercallbackretries")
    features.atxfercallbackretries = _int(retries, features.atxfercallbackretries)
    features.atxferdropcall = _bool(get("general", "atxferdropcall"), features.atxferdropcall)
    return features


def helpline_config(
    agents: Sequence[SimAgent] = (),
    *,
    username: str = "callcenter",
    secret: str = "sim-secret",
    emergency_answers: bool = False,
) -> SimConfig:
    general = asterisk_conf.load(DIALPLANS / "queues_1090.conf").section("general")
    endpoints = [
        # Her number arrives per call (inbound_call(caller_num=...)); the trunk has none.
        Endpoint(CARRIER, "", "", "wpl-inbound"),
        Endpoint(
            OUTBOUND_TRUNK, "", "", "wpl-inbound",
            PhoneBehaviour(answer_after=1.0 if emergency_answers else None),
        ),
    ]
    for agent in agents:
        endpoints.append(
            Endpoint(
                agent.endpoint, agent.name, agent.endpoint, "wpl-agents",
                PhoneBehaviour(answer_after=agent.answer_after, hangup_after=agent.hangup_after),
            )
        )
    manager = asterisk_conf.load(DIALPLANS / "manager.conf.sample")
    # The AMI user the product ships, with its event filters: the backend must
    # work with exactly what a real Asterisk configured this way would send.
    filters = asterisk_conf.event_filters(manager.section("callcenter"), "manager.conf.sample")
    return SimConfig(
        users=[ManagerUser(username, secret, filters=filters)],
        endpoints=endpoints,
        queues=shipped_queues(),
        dialplan=(DIALPLANS / "extensions_1090.conf").read_text(),
        shared_lastcall=_bool(general.get("shared_lastcall"), True),
        persistentmembers=_bool(general.get("persistentmembers"), True),
        features=shipped_features(),
    )
