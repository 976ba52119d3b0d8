"""The wallboard lists who is rostered now but not signed in."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from callcenter.agents.accounts import AccountService
from callcenter.agents.roster import load_roster
from callcenter.agents.views import AgentView
from callcenter.app import RosteredAbsent
from callcenter.store import Store


def view(username: str, state: str) -> AgentView:
    return AgentView(username, username, "agent", f"PJSIP/{username}", state, None, 0.0,
                     (), (), "registered")  # type: ignore[arg-type]


async def test_rostered_agents_who_are_not_signed_in_are_listed(
    migrated_store: Store, tmp_path: Path
) -> None:
    accounts = AccountService(migrated_store)
    for name in ("asha", "meena", "kavita"):
        await accounts.add(name, display_name=name.title(), role="agent",
                           endpoint=f"PJSIP/{name}", password=f"{name}-password-1090")
    roster_file = tmp_path / "roster.toml"
    roster_file.write_text(
        'timezone = "Asia/Kolkata"\n'
        + "".join(
            f'[[shift]]\nwho = "{n}"\nrole = "agent"\ndays = "daily"\n'
            'start = "00:00"\nend = "24:00"\n'
            for n in ("asha", "meena")
        )
    )
    center = SimpleNamespace(roster=load_roster(roster_file), accounts=accounts)
    absent = RosteredAbsent(center)  # type: ignore[arg-type]
    await absent.refresh()
    try:
        listed = absent([view("asha", "available"), view("kavita", "available")])
        # Meena is on shift and not signed in; Asha is signed in; Kavita is not rostered.
        assert [(v.username, v.display_name, v.state, v.rostered) for v in listed] == [
            ("meena", "Meena", "logged_out", True)
        ]
        assert absent([view("asha", "available"), view("meena", "paused")]) == []
    finally:
        if absent._task is not None:
            absent._task.cancel()
