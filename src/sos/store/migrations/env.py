"""Alembic environment of the SOS store: runs on the connection ``sos.store`` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from sos.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # `alembic -c src/sos/store/alembic.ini ...` from a developer's shell
    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///sos-dev.db"
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()


run()
