"""What the simulated PBX is configured with: manager.conf, pjsip endpoints, queues.conf, dialplan.

Plain dataclasses, so tests and scenarios build a PBX in a few lines, plus
:func:`lab_config` — the lab PBX that recorded ``tests/fixtures/asterisk``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ManagerUser:
    username: str
    secret: str
    #: manager.conf ``eventfilter`` lines (legacy regex syntax, ``!`` excludes).
    eventfilters: list[str] = field(default_factory=list)
    #: Filters in Asterisk 22's ``eventfilter(action(..),name(..),header(..))`` form,
    #: as read from a manager.conf user section (anything with
    #: ``allows(event, pairs) -> bool``, e.g. callcenter.pbx.asterisk_conf.EventFilters).
    filters: Any = None


@dataclass
class PhoneBehaviour:
    """How the softphone registered on an endpoint treats an incoming call."""

    #: seconds of ringing before she answers; ``None`` never answers.
    answer_after: float | None = 0.0
    #: rejects every call with 486 Busy Here (DialStatus BUSY).
    busy: bool = False
    #: not registered: the device is UNAVAILABLE and calls fail CHANUNAVAIL.
    registered: bool = True
    #: seconds after answering when the phone hangs up by itself (None: never).
    hangup_after: float | None = None


@dataclass
class Endpoint:
    name: str
    caller_name: str = ""
    caller_num: str = ""
    #: the endpoint's ``context=`` (where its outbound channels are placed).
    context: str = "default"
    phone: PhoneBehaviour = field(default_factory=PhoneBehaviour)


@dataclass
class MemberConfig:
    interface: str
    name: str = ""
    penalty: int = 0
    state_interface: str = ""
    paused: bool = False
    reason: str = ""
    ringinuse: bool | None = None
    wrapuptime: int | None = None


@dataclass
class QueueConfig:
    name: str
    strategy: str = "ringall"
    timeout: int = 15
    retry: int = 5
    wrapuptime: int = 0
    weight: int = 0
    ringinuse: bool = True
    #: ``yes``, ``no``, ``strict``, ``loose`` or a comma list of conditions
    #: (paused, penalty, inuse, ringing, unavailable, invalid, unknown, wrapup).
    joinempty: str = "yes"
    leavewhenempty: str = "no"
    reportholdtime: bool = False
    #: ``no``, ``yes`` (this queue) or ``all`` (every queue of the member).
    autopause: str = "no"
    maxlen: int = 0
    servicelevel: int = 0
    autofill: bool = True
    musicclass: str = "default"
    members: list[MemberConfig] = field(default_factory=list)


@dataclass
class FeaturesConfig:
    """features.conf, with Asterisk 22's defaults (main/features_config.c).

    ``atxfer`` has no default code: AMI ``Atxfer`` answers "No attended transfer
    feature code found" until ``[featuremap] atxfer`` is configured.
    """

    blindxfer: str = "#"
    disconnect: str = "*"
    atxfer: str = ""
    atxferabort: str = "*1"
    atxfercomplete: str = "*2"
    atxferthreeway: str = "*3"
    atxferswap: str = "*4"
    #: seconds the transfer target rings before the transfer gives up.
    atxfernoanswertimeout: float = 15.0
    #: ``no``: the transferer hanging up while the target rings starts the recall.
    atxferdropcall: bool = False
    atxferloopdelay: float = 10.0
    atxfercallbackretries: int = 2
    transferdigittimeout: float = 3.0


@dataclass
class SimConfig:
    users: list[ManagerUser] = field(default_factory=lambda: [ManagerUser("lab", "labsecret")])
    endpoints: list[Endpoint] = field(default_factory=list)
    queues: list[QueueConfig] = field(default_factory=list)
    dialplan: str = ""
    #: queues.conf [general] shared_lastcall: wrap-up counts across queues.
    shared_lastcall: bool = True
    persistentmembers: bool = True
    #: file where dynamic members are kept across restarts (persistentmembers).
    state_file: str | None = None
    #: prompt lengths in 8 kHz samples (``endpos=`` and play time).
    sounds: dict[str, int] = field(
        default_factory=lambda: {
            "hello-world": 11234,
            "beep": 3404,
            "demo-congrats": 46000,
            "silence/1": 8000,
            "queue-thankyou": 9000,
            "digits/0": 4000,
        }
    )
    default_sound_samples: int = 8000
    #: ast_answer() waits up to 500 ms for the first media frame.
    answer_media_wait: float = 0.5
    version: str = "22.10.1"
    #: how long a wrong Login waits before "Authentication failed".
    auth_fail_delay: float = 1.0
    timestampevents: bool = True
    #: processed-calls counter at start (Asterisk keeps it across reloads).
    processed_calls: int = 0
    #: first channel name counter (``PJSIP/caller-0000001c``).
    first_sequence: int = 0
    #: first Uniqueid sequence (``1795329071.30``); None: same as first_sequence.
    first_uniqueid: int | None = None
    features: FeaturesConfig = field(default_factory=FeaturesConfig)


LAB_DIALPLAN = r"""
[lab-inbound]
exten => 600,1,NoOp(astlab basic call from "${CALLERID(name)}" <${CALLERID(num)}>)
 same => n,Answer()
 same => n,Playback(hello-world)
 same => n,Hangup()
exten => 601,1,Answer()
 same => n,Echo()
exten => 603,1,Answer()
 same => n,Playback(demo-congrats)
 same => n,Hangup()
exten => 1090,1,NoOp(astlab queue call from "${CALLERID(name)}" <${CALLERID(num)}>)
 same => n,Answer()
 same => n,AGI(agi:async)
 same => n,Queue(counselors,t,,,300)
 same => n,Hangup()
exten => 1091,1,Answer()
 same => n,MixMonitor(${UNIQUEID}.wav)
 same => n,AGI(agi:async)
 same => n,Queue(counselors,t,,,300)
 same => n,Hangup()
exten => 1092,1,NoOp(astlab priority caller "${CALLERID(name)}" <${CALLERID(num)}>)
 same => n,Answer()
 same => n,Set(QUEUE_PRIO=10)
 same => n,AGI(agi:async)
 same => n,Queue(counselors,t,,,300)
 same => n,Hangup()
exten => 1093,1,NoOp(astlab ring-no-answer test)
 same => n,Answer()
 same => n,Queue(ringnoanswer,t,,,300)
 same => n,Hangup()

[lab-agents]
exten => 700,1,Answer()
 same => n,Playback(hello-world)
 same => n,Hangup()

[lab-callback]
exten => s,1,NoOp(astlab callback agent leg WPL_CALLBACK=${WPL_CALLBACK})
 same => n,Queue(counselors,t,,,120)
 same => n,Hangup()

[lab-callback-dial]
exten => _X.,1,NoOp(astlab callback: dialing customer, WPL_CALLBACK=${WPL_CALLBACK})
 same => n,Dial(PJSIP/cbcallee,30)
 same => n,Hangup()
"""


def lab_config(**overrides: object) -> SimConfig:
    """The lab PBX of the recorded traces (see tests/fixtures/asterisk/README.md)."""
    endpoints = [
        Endpoint("caller", "Lab Caller", "5550100", "lab-inbound"),
        Endpoint("cbcallee", "Lab Callback", "5550100", "lab-inbound"),
        Endpoint("agent1", "Agent One", "1001", "lab-agents"),
        Endpoint("agent2", "Agent Two", "1002", "lab-agents"),
        Endpoint("agent3", "Agent Three", "1003", "lab-agents"),
        Endpoint("agent4", "Agent Four", "1004", "lab-agents", PhoneBehaviour(answer_after=None)),
    ]
    queues = [
        QueueConfig(
            "counselors",
            strategy="rrmemory",
            joinempty="yes",
            leavewhenempty="no",
            timeout=15,
            retry=2,
            ringinuse=False,
            reportholdtime=True,
            members=[
                MemberConfig("PJSIP/agent1", "Agent One"),
                MemberConfig("PJSIP/agent2", "Agent Two"),
            ],
        ),
        QueueConfig(
            "ringnoanswer",
            strategy="linear",
            timeout=15,
            retry=2,
            ringinuse=False,
            members=[
                MemberConfig("PJSIP/agent4", "Agent Four NoAnswer"),
                MemberConfig("PJSIP/agent2", "Agent Two"),
            ],
        ),
    ]
    config = SimConfig(endpoints=endpoints, queues=queues, dialplan=LAB_DIALPLAN)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config
