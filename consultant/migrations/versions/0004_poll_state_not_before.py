"""poll_state: not_before, the time a throttling server asked us to wait until

Exchange Online answers a client that polls too hard with "Request is
throttled. Suggested Backoff Time: N milliseconds". The next poll now waits
the longer of our own backoff and that time; every worker reads it here.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('poll_state') as batch:
        batch.add_column(sa.Column('not_before', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('poll_state') as batch:
        batch.drop_column('not_before')
