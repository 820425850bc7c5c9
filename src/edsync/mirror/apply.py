"""``Applier``: one source's writer into the mirror, the one object the engine
holds. The page fold and its writes are the ledger's (``mirror.ledger``), a
snapshot's upserts and tombstones are ``mirror.snapshot``'s; this joins them."""

from __future__ import annotations

from collections.abc import Sequence

from edsync.mirror import checkpoints, queue, refresh, snapshot
from edsync.mirror.ledger import Ledger
from edsync.model import Cursor, Queued, Refreshed, SnapshotPage


class Applier(Ledger):
    """Writes pages for one source into the mirror: change pages (``apply``,
    ``reapply``) and snapshot pages."""

    def apply_snapshot(self, page: SnapshotPage, progress: checkpoints.SnapshotProgress) -> int:
        """Upsert one page of current objects as of the snapshot's cursor position,
        with the snapshot's progress, in one transaction. Purged objects become
        tombstones (a forgotten person's data is erased)."""
        return snapshot.apply_snapshot(self, page, progress)

    def finish_snapshot(self, entities: Sequence[str], snapshot_id: str, cursor: Cursor) -> int:
        """Mark deleted what the snapshot lacked and resume at ``cursor``, atomically."""
        return snapshot.finish_snapshot(self, entities, snapshot_id, cursor)

    def queued(self, limit: int) -> list[Queued]:
        """The oldest queued resources to read again."""
        return queue.oldest(self.engine, self.source, limit)

    def apply_refreshed(self, results: Sequence[tuple[Refreshed, Queued]]) -> int:
        """What the reads of queued resources found, and the queue rows taken, atomically."""
        return refresh.write_refreshed(self, results, self.outlives_person)

    def apply_purges(self, gone: Sequence[Refreshed]) -> int:
        """One page of upstream's purges; returns how many were new."""
        return refresh.write_purges(self, gone, self.outlives_person)
