"""Agents: accounts, roles and skills, the agent state machine, softphone registration,
and the duty roster.

* :mod:`.models`: roles, skills, the skill -> queue mapping, the account tables;
* :mod:`.accounts`: :class:`~.accounts.AccountService` (add, disable, passwords, skills);
* :mod:`.state`: the pure agent state machine and the softphone registry;
* :mod:`.roster`: shifts from TOML, who is on duty, who is missing;
* :mod:`.cli`: ``callcenter users ...``.
"""
