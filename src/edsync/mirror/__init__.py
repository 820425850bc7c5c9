"""The mirror database, and the only package that speaks SQL: schema and
migrations, the ledger's page fold (``ledger``, joined with ``snapshot`` in
``apply.Applier``), erasure, maintenance, checkpoints, the outbox's queries,
read-only summaries, locks.

The rest of edsync holds a ``Mirror`` (``db.create_mirror_engine`` makes one)
and hands it to these modules' functions; their failures are ``MirrorError``
(``errors``), and the timestamps they read are aware UTC datetimes.
"""

from typing import TypeAlias

from sqlalchemy import Engine

from edsync.mirror.errors import MirrorError, RetriableMirrorError

Mirror: TypeAlias = Engine
"""An open mirror database: what the rest of edsync passes around and only the
mirror's own functions look into (an SQLAlchemy engine, by the mirror's name)."""

__all__ = ["Mirror", "MirrorError", "RetriableMirrorError"]
