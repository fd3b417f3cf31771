"""The one SQLAlchemy MetaData every domain declares its tables on.

Each domain owns its tables in its own module (muster_services/<domain>/tables.py);
this module only carries the shared naming convention, so Alembic emits stable
constraint names, and the bus tables that belong to the shared core.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL text of `column IN ('a', 'b', ...)` for a CHECK constraint."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# --- event bus (outbox) -----------------------------------------------------
# Written in the same transaction as the state change it describes. `txid` is
# the writing transaction's id: consumers only read events whose transaction is
# older than every transaction still running, so an event can never appear
# "behind" a consumer's position (see muster_services/core/bus.py).
events = Table(
    "events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "txid",
        BigInteger,
        nullable=False,
        server_default=text("(pg_current_xact_id()::text)::bigint"),
    ),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False, server_default=""),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # When the event was published (not when its transaction began).
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("clock_timestamp()"),
    ),
)
Index("ix_events_txid_id", events.c.txid, events.c.id)
Index("ix_events_created_at", events.c.created_at)

# Durable consumers' positions: the last (txid, id) each named consumer processed.
event_consumers = Table(
    "event_consumers",
    metadata,
    Column("name", Text, primary_key=True),
    Column("last_txid", BigInteger, nullable=False, server_default="0"),
    Column("last_id", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Farm-wide secrets every replica shares (muster_services/core/auth.py): the token
# signing key, the agent enrollment secret. Created at random on first use.
farm_secrets = Table(
    "farm_secrets",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Each user's token generation (muster_services/core/auth.py): a user token
# carries its user's generation at login, and one older than the row's is
# refused. Deleting or disabling a user, or changing its role, adds 1. Only
# users whose tokens were ever revoked have a row; the row outlives the user
# (a user created again under the name starts from it).
token_generations = Table(
    "token_generations",
    metadata,
    Column("user_name", Text, primary_key=True),
    Column("generation", BigInteger, nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
