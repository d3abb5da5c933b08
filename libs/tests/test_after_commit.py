"""`propdesk.db.session.after_commit`: the callback runs once the transaction commits, and
never for one that rolled back (not even at a later commit of the same session)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from propdesk.db.session import after_commit, create_engine, session_factory
from propdesk.settings import Settings


async def test_after_commit_runs_on_commit_only(settings: Settings) -> None:
    engine = create_engine(settings)
    calls: list[str] = []
    try:
        async with session_factory(engine)() as session:
            async with session.begin():
                await session.execute(text("SELECT 1"))
                after_commit(session, lambda: calls.append("first"))
                after_commit(session, lambda: calls.append("second"))
                assert calls == []
            assert calls == ["first", "second"]

            with pytest.raises(RuntimeError):
                async with session.begin():
                    after_commit(session, lambda: calls.append("rolled back"))
                    raise RuntimeError("roll back")
            async with session.begin():
                await session.execute(text("SELECT 1"))
            assert calls == ["first", "second"]
    finally:
        await engine.dispose()
