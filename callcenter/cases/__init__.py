"""Cases and the caller's identity: kept apart so her number never travels.

- ``vault``: tokens and sealed numbers (the only place a number is in clear);
- ``identities``: the identity rows the vault's entries become;
- ``service``: cases opened at wrap-up, statuses, timeline, harassers, blocks;
- ``consent``: her consent and the consent-gated, audited reveal of a number;
- ``audit``: the append-only, hash-chained audit log and its anchor;
- ``search``: supervisors' search and CSV export (audited, without numbers);
- ``rotation``: moving every sealed number and token to a new vault key.

Nothing is re-exported here: importing the package must stay cheap and free of
import cycles with ``callcenter.pbx``, which uses the vault.
"""
