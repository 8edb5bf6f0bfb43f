"""PostgreSQL: the calls' account is checked once a statement instead of once a row

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 19:00:00.000000

``calls.account_id`` was a foreign key. PostgreSQL checks a foreign key row by row: for every row
inserted, a query of ``accounts`` that locks the account's row (``FOR KEY SHARE``). For a batch of
1,000 calls, which all name one account, that was 12 of the insert's 46 ms.

On PostgreSQL the key becomes triggers that keep its every rule, set-wise:

- an insert into ``calls``: once a statement, the accounts its rows name are locked as the key
  locked them (``FOR KEY SHARE``: an account being deleted waits for this transaction, or is
  already gone) and then must all exist;
- an update that changes a call's ``account_id``: the new account is locked and must exist, row by
  row, as the key did (no application path changes it);
- a deleted account takes its calls with it (the key's ``ON DELETE CASCADE``);
- an account's ``id`` does not change while calls name it (the key's ``NO ACTION``);
- both in READ COMMITTED transactions only: a snapshot older than the statement could miss calls
  committed since (the key's checks failed with a serialization error there; these refuse the other
  isolation levels outright);
- ``TRUNCATE accounts`` empties ``calls`` too (as ``TRUNCATE accounts CASCADE`` did; without
  ``CASCADE`` the other tables' keys to ``accounts`` still refuse it).

The errors are the key's own: its SQLSTATE (23503, ``foreign_key_violation``), message, detail and
constraint name. The functions run with the rights of the tables' owner and this schema's
``search_path``, as the key's checks did. The triggers, like the key's, do not fire under
``session_replication_role = replica``. SQLite keeps the declared key: its check is one index probe a
row.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FOREIGN_KEY = "calls_account_id_fkey"


def _key_error(message: str, detail: str, value: str) -> str:
    """PL/pgSQL raising the key's own error: its SQLSTATE, message, detail and constraint name."""
    return (
        f"RAISE foreign_key_violation USING MESSAGE = '{message}', DETAIL = format('{detail}', {value}), "
        f"CONSTRAINT = '{FOREIGN_KEY}', TABLE = 'calls'"
    )


NOT_PRESENT = f'insert or update on table "calls" violates foreign key constraint "{FOREIGN_KEY}"'
NOT_PRESENT_DETAIL = 'Key (account_id)=(%s) is not present in table "accounts".'
STILL_REFERENCED = (
    f'update or delete on table "accounts" violates foreign key constraint "{FOREIGN_KEY}" on table "calls"'
)
STILL_REFERENCED_DETAIL = 'Key (id)=(%s) is still referenced from table "calls".'


# Deleting an account, or changing its id, must see every call that names it. A snapshot older than
# the statement could miss calls committed since (there, the key's checks failed with a serialization
# error): READ COMMITTED only.
READ_COMMITTED_ONLY = """
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE serialization_failure USING
                    MESSAGE = 'an account is deleted or given a new id in READ COMMITTED transactions only',
                    HINT = 'Its calls must be seen from a snapshot taken after they were written.';
            END IF;"""

# (name, when it fires, its body): each trigger runs the function of the same name.
TRIGGERS = (
    (
        "pbx_cdr_calls_inserted",
        "AFTER INSERT ON calls REFERENCING NEW TABLE AS pbx_cdr_new_calls FOR EACH STATEMENT",
        f"""
        DECLARE
            missing integer;
        BEGIN
            PERFORM 1 FROM accounts
            WHERE id IN (SELECT DISTINCT account_id FROM pbx_cdr_new_calls)
            ORDER BY id FOR KEY SHARE;
            SELECT n.account_id INTO missing
            FROM (SELECT DISTINCT account_id FROM pbx_cdr_new_calls) AS n
            WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = n.account_id)
            LIMIT 1;
            IF FOUND THEN
                {_key_error(NOT_PRESENT, NOT_PRESENT_DETAIL, "missing")};
            END IF;
            RETURN NULL;
        END
        """,
    ),
    (
        "pbx_cdr_calls_account_changed",
        "AFTER UPDATE OF account_id ON calls FOR EACH ROW "
        "WHEN (OLD.account_id IS DISTINCT FROM NEW.account_id)",
        f"""
        BEGIN
            PERFORM 1 FROM accounts WHERE id = NEW.account_id FOR KEY SHARE;
            IF NOT FOUND THEN
                {_key_error(NOT_PRESENT, NOT_PRESENT_DETAIL, "NEW.account_id")};
            END IF;
            RETURN NULL;
        END
        """,
    ),
    (
        "pbx_cdr_accounts_deleted",
        "AFTER DELETE ON accounts REFERENCING OLD TABLE AS pbx_cdr_old_accounts FOR EACH STATEMENT",
        f"""
        BEGIN
            {READ_COMMITTED_ONLY}
            DELETE FROM calls WHERE account_id IN (SELECT id FROM pbx_cdr_old_accounts);
            RETURN NULL;
        END
        """,
    ),
    (
        "pbx_cdr_accounts_rekeyed",
        "AFTER UPDATE OF id ON accounts FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)",
        f"""
        BEGIN
            {READ_COMMITTED_ONLY}
            IF EXISTS (SELECT 1 FROM calls WHERE account_id = OLD.id) THEN
                {_key_error(STILL_REFERENCED, STILL_REFERENCED_DETAIL, "OLD.id")};
            END IF;
            RETURN NULL;
        END
        """,
    ),
    (
        "pbx_cdr_accounts_truncated",
        "AFTER TRUNCATE ON accounts FOR EACH STATEMENT",
        """
        BEGIN
            -- Already empty when the same statement truncated it (TRUNCATE accounts, calls), and
            -- then in use by that statement: truncated again, it would refuse.
            IF EXISTS (SELECT 1 FROM calls) THEN
                TRUNCATE calls;
            END IF;
            RETURN NULL;
        END
        """,
    ),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE calls DROP CONSTRAINT {FOREIGN_KEY}")
    for name, when, body in TRIGGERS:
        # As the key's checks did: with the rights of the tables' owner (who runs the migrations),
        # and on the tables of this schema whatever the session's search_path.
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
            f"SECURITY DEFINER SET search_path FROM CURRENT AS $${body}$$"
        )
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION {name}()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, when, _ in reversed(TRIGGERS):
        table = when.split(" ON ")[1].split()[0]
        op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute(f"DROP FUNCTION {name}()")
    op.execute(
        f"ALTER TABLE calls ADD CONSTRAINT {FOREIGN_KEY} FOREIGN KEY (account_id) "
        "REFERENCES accounts (id) ON DELETE CASCADE"
    )
