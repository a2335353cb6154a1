"""audit_entry: append-only in the database itself

The audit log records who did what to which case or account, and who looked
at which question. The application only ever adds to it; triggers make the
database refuse an UPDATE or DELETE of an entry from any connection, so a
bug, a stray admin query or a compromised application role cannot rewrite
the history (checklist H07). Entries hold no question text, so the
retention purge leaves them alone.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

MESSAGE = 'audit entries are append-only'


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"""
            CREATE FUNCTION audit_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{MESSAGE}';
            END $$""")
        op.execute("""
            CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry
            FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()""")
        op.execute("""
            CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
            FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only()""")
        return
    for event in ('UPDATE', 'DELETE'):
        op.execute(f"""
            CREATE TRIGGER audit_entry_no_{event.lower()} BEFORE {event} ON audit_entry
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER audit_entry_no_truncate ON audit_entry')
        op.execute('DROP TRIGGER audit_entry_append_only ON audit_entry')
        op.execute('DROP FUNCTION audit_entry_append_only()')
        return
    op.execute('DROP TRIGGER audit_entry_no_update')
    op.execute('DROP TRIGGER audit_entry_no_delete')
