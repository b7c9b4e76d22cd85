"""Every change of a maker's policy is audited: who, before, after.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from payment_window.adapters.tables import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maker_policy_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("maker_id", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_maker_policy_audit_maker_id", "maker_policy_audit", ["maker_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_maker_policy_audit_maker_id", "maker_policy_audit")
    op.drop_table("maker_policy_audit")
