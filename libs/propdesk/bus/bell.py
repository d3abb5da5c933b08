"""Waking this process's outbox relay when a transaction that wrote outbox rows commits.

The outbox trigger's NOTIFY made every writing transaction take PostgreSQL's one
notification lock at commit and hold it through the commit's WAL flush, so all writers
of the database committed one after another (`Lock:object` waits on COMMIT under load).
A service process runs its own relay, so it rings the relay directly after commit, and
its connections carry `app.outbox_bell = 'local'`, which tells the trigger not to
notify. Writers in other processes (the CLI, a psql session, a test) still notify
through the trigger; the relay's poll covers a missed ring.

- `mark(session, schema)`: the session's transaction wrote outbox rows of `schema`; the
  relay is rung after that transaction commits (nothing is rung on rollback).
- `ring(schema)`: after a commit made outside a SQLAlchemy session (a plain asyncpg
  transaction).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from propdesk.db.session import after_commit

# The session-level setting the outbox trigger reads: 'local' means "my process rings
# its relay itself", so the trigger skips pg_notify.
SETTING = "app.outbox_bell"
LOCAL = "local"

_relays: defaultdict[str, set[asyncio.Event]] = defaultdict(set)


def attach(schema: str, wake: asyncio.Event) -> None:
    """A relay of `schema` in this process: `wake` is set on every ring."""
    _relays[schema].add(wake)


def detach(schema: str, wake: asyncio.Event) -> None:
    _relays[schema].discard(wake)


def ring(schema: str) -> bool:
    """Wake this process's relays of `schema` (after a commit). False if none listens."""
    relays = _relays.get(schema)
    if not relays:
        return False
    for wake in relays:
        wake.set()
    return True


def mark(session: AsyncSession, schema: str) -> None:
    """Ring `schema`'s relay once the session's current transaction commits (once however
    often it is marked; never if it rolls back)."""
    after_commit(session, _ringer(schema))


def local_settings() -> dict[str, str]:
    """Server settings for the connections of a process that runs its own relay."""
    return {SETTING: LOCAL}


_ringers: dict[str, Callable[[], None]] = {}


def _ringer(schema: str) -> Callable[[], None]:
    """One callable per schema, so `after_commit` keeps one ring per transaction."""
    fn = _ringers.get(schema)
    if fn is None:
        fn = _ringers[schema] = partial(ring, schema)
    return fn
