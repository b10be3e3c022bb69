"""Secrets in SQL, encrypted: per team, write-only, never returned in plain text by the API.

Each value is sealed with AES-256-GCM (``cryptography``), a fresh 96-bit nonce per write,
and the team and name as associated data, so a sealed value copied to another row (another
team's secret) does not open. The key is the server's: ``SOS_SECRET_KEY`` (32 bytes,
base64), or ``secret-key`` in the data dir (created 0600 at the first start), which no
instance can read (``sos.runtime.local.sandbox``). Servers sharing one PostgreSQL database
must share the key (set ``SOS_SECRET_KEY`` on each). A key that cannot open a stored value is
an error that says so, never an empty value.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets as random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Row, delete, insert, select, update

from sos.errors import NotFoundError, ServerError, ValidationError
from sos.models import Secret
from sos.store import tables as t
from sos.store.store import Store

__all__ = ["SECRET_KEY_FILE", "SecretTable", "load_key"]

SECRET_KEY_FILE = "secret-key"
NONCE_BYTES = 12


def load_key(data_dir: Path, from_env: str | None) -> bytes:
    """The server's 32-byte secret key: ``from_env`` (base64), else the data dir's key file
    (made on the first start, readable by the server's user only)."""
    if from_env:
        try:
            key = base64.b64decode(from_env, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ValidationError(
                "SOS_SECRET_KEY must be 32 bytes in base64 (make one with: python3 -c "
                '"import base64, os; print(base64.b64encode(os.urandom(32)).decode())")'
            )
        return key
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")
        os.replace(tmp, path)
    key = base64.b64decode(path.read_text().strip())
    if len(key) != 32:
        raise ValidationError(f"{path} does not hold a 32-byte key in base64")
    return key


def _to_secret(row: Row[Any]) -> Secret:
    return Secret(
        name=row.name,
        team=row.team,
        version=row.version,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


class SecretTable:
    def __init__(self, store: Store, key: bytes) -> None:
        self.store = store
        self._aead = AESGCM(key)

    def _seal(self, team: str, name: str, value: str) -> bytes:
        nonce = random.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value.encode(), f"{team}/{name}".encode())

    def _open(self, team: str, name: str, sealed: bytes) -> str:
        try:
            plain = self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], f"{team}/{name}".encode()
            )
        except InvalidTag:
            raise ServerError(
                f"secret {name!r} of team {team!r} cannot be opened with this server's key "
                "(SOS_SECRET_KEY or the data dir's secret-key changed?): set it again with "
                f"`sos secret set {name} --team {team}`"
            ) from None
        return plain.decode()

    def set(self, team: str, name: str, value: str, actor: str) -> tuple[Secret, bool]:
        """Create or rotate; returns the secret (never its value) and whether it is new."""
        now = self.store.clock()
        sealed = self._seal(team, name, value)
        key = (t.secrets.c.team == team) & (t.secrets.c.name == name)
        with self.store.write() as conn:
            row = conn.execute(select(t.secrets.c.version).where(key)).first()
            if row is None:
                conn.execute(
                    insert(t.secrets).values(
                        team=team,
                        name=name,
                        sealed=sealed,
                        version=1,
                        created_at=now,
                        created_by=actor,
                        updated_at=now,
                        updated_by=actor,
                    )
                )
            else:
                conn.execute(
                    update(t.secrets)
                    .where(key)
                    .values(
                        sealed=sealed, version=row.version + 1, updated_at=now, updated_by=actor
                    )
                )
            stored = conn.execute(select(t.secrets).where(key)).one()
        return _to_secret(stored), row is None

    def of_team(self, team: str) -> list[Secret]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.secrets).where(t.secrets.c.team == team).order_by(t.secrets.c.name)
            )
            return [_to_secret(row) for row in rows]

    def delete(self, team: str, name: str) -> None:
        with self.store.write() as conn:
            gone = conn.execute(
                delete(t.secrets).where((t.secrets.c.team == team) & (t.secrets.c.name == name))
            ).rowcount
        if not gone:
            raise NotFoundError(
                f"team {team!r} has no secret {name!r}", details={"team": team, "secret": name}
            )

    def missing(self, team: str, names: Iterable[str]) -> list[str]:
        """Which of ``names`` team ``team`` has no secret of."""
        wanted = set(names)
        if not wanted:
            return []
        with self.store.read() as conn:
            have = set(
                conn.execute(
                    select(t.secrets.c.name).where(
                        (t.secrets.c.team == team) & t.secrets.c.name.in_(wanted)
                    )
                ).scalars()
            )
        return sorted(wanted - have)

    def values(self, team: str, names: Iterable[str]) -> dict[str, str]:
        """The plain values of ``names`` that team ``team`` has (for its instances only)."""
        wanted = set(names)
        if not wanted:
            return {}
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.secrets.c.name, t.secrets.c.sealed).where(
                    (t.secrets.c.team == team) & t.secrets.c.name.in_(wanted)
                )
            ).all()
        return {row.name: self._open(team, row.name, row.sealed) for row in rows}
