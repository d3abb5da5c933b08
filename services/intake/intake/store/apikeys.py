"""API keys: `pdk_<key_id>_<secret>`. Only sha256(key) is stored; the secret is shown once.
Authentication goes through `intake.authenticate_api_key`, a SECURITY DEFINER function,
because the tenant is not known until the key is."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from intake.store.tables import api_keys
from propdesk.uuid7 import uuid7

PREFIX = "pdk"


@dataclass(frozen=True, slots=True)
class NewKey:
    id: UUID
    key_id: str
    secret: str  # the whole key, shown to the caller once


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    tenant_id: UUID
    project_ids: frozenset[UUID] | None
    api_key_id: UUID
    key_id: str
    name: str
    roles: frozenset[str]
    rate_limit_per_minute: int


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_key(key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != 16 or not secret:
        return None
    return key_id


async def create_key(
    session: AsyncSession,
    *,
    tenant_id: UUID,
    name: str,
    project_ids: list[UUID] | None,
    created_by: str,
    rate_limit_per_minute: int = 6000,
    roles: tuple[str, ...] = ("integration",),
) -> NewKey:
    key_id = secrets.token_hex(8)
    secret = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row_id = uuid7()
    await session.execute(
        api_keys.insert().values(
            id=row_id,
            tenant_id=tenant_id,
            key_id=key_id,
            key_hash=hash_key(secret),
            name=name,
            project_ids=project_ids,
            roles=list(roles),
            rate_limit_per_minute=rate_limit_per_minute,
            created_by=created_by,
        )
    )
    return NewKey(row_id, key_id, secret)


async def authenticate(session: AsyncSession, key: str) -> KeyIdentity | None:
    key_id = parse_key(key)
    if key_id is None:
        return None
    row = (
        await session.execute(
            text("SELECT * FROM intake.authenticate_api_key(:k, :h)"),
            {"k": key_id, "h": hash_key(key)},
        )
    ).first()
    if row is None:
        return None
    return KeyIdentity(
        tenant_id=row.tenant_id,
        project_ids=frozenset(row.project_ids) if row.project_ids is not None else None,
        api_key_id=row.api_key_id,
        key_id=key_id,
        name=row.name,
        roles=frozenset(row.roles),
        rate_limit_per_minute=row.rate_limit_per_minute,
    )


async def list_keys(session: AsyncSession) -> list[Row]:
    """The keys the context may manage: row-level security shows a credential limited to
    some projects only the keys limited to some of those (intake migration 0010), not
    those of the whole company or of another project."""
    q = select(
        api_keys.c.id,
        api_keys.c.key_id,
        api_keys.c.name,
        api_keys.c.project_ids,
        api_keys.c.roles,
        api_keys.c.rate_limit_per_minute,
        api_keys.c.created_by,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
    ).order_by(api_keys.c.created_at)
    return list(await session.execute(q))


async def revoke(session: AsyncSession, key_row_id: UUID) -> bool:
    """Revoke an active key the context may manage (see `list_keys`)."""
    result = await session.execute(
        update(api_keys)
        .where(api_keys.c.id == key_row_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(result.rowcount)


async def revoke_by_key_id(session: AsyncSession, key_id: str) -> UUID | None:
    """Revoke the tenant's active key with this public id: its row id, None if none."""
    result = await session.execute(
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(api_keys.c.id)
    )
    return result.scalar_one_or_none()
