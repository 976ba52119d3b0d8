"""The simulator against the recorded Asterisk 22 traces (see tests/support/conformance.py)."""

from __future__ import annotations

import pytest

from tests.support.conformance import compare, load_trace, replay

TRACES = [
    "corestatus",
    "login_wrong_secret",
    "actions",
    "actions_misc",
    "basic_call",
    "queue_asyncagi_call",
    "ivr_getdata_dtmf",
    "ivr_getdata_timeout",
    "queue_abandon_call",
    "queue_priority_two_callers",
    "queue_ringnoanswer",
    "callback_originate_local",
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", TRACES)
async def test_simulator_matches_trace(name: str) -> None:
    trace = load_trace(name)
    recording = await replay(trace)
    problems = compare(trace, recording)
    assert not problems, "\n".join(problems)
