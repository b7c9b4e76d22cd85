"""Stripe Connect and attached Checkout Sessions: a window's connected account, charge type and
fee; whether its session was made by another integration; a session the worker must still
expire after a webhook; and the account each Checkout Session lives on.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_sessions") as batch:
        batch.add_column(sa.Column("connect_account_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("connect_charge", sa.String(16), nullable=True))
        batch.add_column(sa.Column("application_fee_amount", sa.BigInteger, nullable=True))
        batch.add_column(
            sa.Column("on_behalf_of", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("attached", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("expire_checkout_id", sa.String(255), nullable=True))
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.add_column(sa.Column("stripe_account", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.drop_column("stripe_account")
    with op.batch_alter_table("payment_sessions") as batch:
        batch.drop_column("expire_checkout_id")
        batch.drop_column("attached")
        batch.drop_column("on_behalf_of")
        batch.drop_column("application_fee_amount")
        batch.drop_column("connect_charge")
        batch.drop_column("connect_account_id")
