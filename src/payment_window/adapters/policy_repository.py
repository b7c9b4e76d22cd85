"""The makers' extension policies in the store, and the audit of every change to one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from payment_window.adapters.tables import maker_policies, maker_policy_audit
from payment_window.domain.policy import ExtensionPolicy, OnExpiry


def _policy_from_row(row: Row[Any]) -> ExtensionPolicy:
    return ExtensionPolicy(
        max_extension_minutes=row.max_extension_minutes,
        makers_may_override=row.makers_may_override,
        on_expiry=OnExpiry(row.on_expiry),
    )


class SqlPolicyRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, maker_id: str) -> ExtensionPolicy | None:
        result = await self._connection.execute(
            select(maker_policies).where(maker_policies.c.maker_id == maker_id)
        )
        row = result.first()
        return _policy_from_row(row) if row else None

    async def put(self, maker_id: str, policy: ExtensionPolicy, now: datetime) -> None:
        values = {
            "max_extension_minutes": policy.max_extension_minutes,
            "makers_may_override": policy.makers_may_override,
            "on_expiry": policy.on_expiry.value,
            "updated_at": now,
        }
        result = await self._connection.execute(
            update(maker_policies).where(maker_policies.c.maker_id == maker_id).values(**values)
        )
        if result.rowcount == 0:
            await self._connection.execute(
                insert(maker_policies).values(maker_id=maker_id, **values)
            )

    async def record_change(
        self,
        maker_id: str,
        actor: str,
        before: ExtensionPolicy | None,
        after: ExtensionPolicy,
        at: datetime,
    ) -> None:
        await self._connection.execute(
            insert(maker_policy_audit).values(
                maker_id=maker_id,
                actor=actor,
                before=None if before is None else before.as_dict(),
                after=after.as_dict(),
                at=at,
            )
        )
