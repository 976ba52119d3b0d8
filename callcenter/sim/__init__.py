"""A PBX simulator that speaks AMI like Asterisk 22, for tests, the demo and load runs.

Never imported by production code paths. Start one with::

    sim = SimPBX(lab_config(), speed=20)
    await sim.start(port=0)
    sim.place_call("caller", "1090")
"""

from .clock import Clock, RealClock
from .config import (
    Endpoint,
    ManagerUser,
    MemberConfig,
    PhoneBehaviour,
    QueueConfig,
    SimConfig,
    lab_config,
)
from .server import SimPBX

__all__ = [
    "Clock",
    "Endpoint",
    "ManagerUser",
    "MemberConfig",
    "PhoneBehaviour",
    "QueueConfig",
    "RealClock",
    "SimConfig",
    "SimPBX",
    "lab_config",
]
