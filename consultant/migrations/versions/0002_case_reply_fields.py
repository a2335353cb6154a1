"""case: the sender's display name and the thread's Message-IDs, kept at intake

Answering a question no longer parses the raw message a second time: intake
keeps what the reply needs (first name, References chain) beside the
question text, subject and Message-ID it already kept.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.add_column(sa.Column('sender_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False,
                                   server_default=''))
        batch.add_column(sa.Column('reference_ids', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.drop_column('reference_ids')
        batch.drop_column('sender_name')
