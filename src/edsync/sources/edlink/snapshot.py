"""Edlink's bootstrap (SPEC 2.2): every current object from the Graph list
endpoints, list by list, in the order Edlink recommends."""

from __future__ import annotations

from collections.abc import Iterator

from edsync.errors import FatalError, MalformedPageError
from edsync.model import SNAPSHOT_DONE, Cursor, SnapshotObject, SnapshotPage
from edsync.pages import by_link
from edsync.sources.edlink.graph import GraphReader, Link, person_of

# The Graph list endpoints, in the order Edlink recommends for a bootstrap.
COLLECTIONS: tuple[tuple[str, str], ...] = (
    ("district", "districts"),
    ("school", "schools"),
    ("session", "sessions"),
    ("course", "courses"),
    ("person", "people"),
    ("class", "classes"),
    ("section", "sections"),
    ("enrollment", "enrollments"),
    ("agent", "agents"),
)


class GraphSnapshot(GraphReader):
    """The snapshot half of an Edlink source (``EdlinkSource`` adds ``head``)."""

    snapshot_entities: tuple[str, ...] = tuple(entity for entity, _ in COLLECTIONS)

    def after_snapshot(self, head: str | None, base: int) -> Cursor:
        # Positions are receipt order: the stream goes on numbering from base.
        return Cursor(head or "", base)

    def snapshot(self, resume: str | None = None) -> Iterator[SnapshotPage]:
        """The lists in order; ``resume`` (an entity) restarts that entity's list,
        since a ``$next`` link expires and cannot be kept.

        Nothing of a page is kept once it is yielded (its bytes go as soon as
        they are parsed): with the consumer letting go of it too, one page at
        a time is in memory, however many the lists hold."""
        kinds = [entity for entity, _ in COLLECTIONS]
        start = 0 if resume is None else _resume_index(kinds, resume)
        size = self.settings.page_size
        for index, (entity, collection) in enumerate(COLLECTIONS[start:], start):
            following = kinds[index + 1] if index + 1 < len(kinds) else SNAPSHOT_DONE
            first: Link = (f"/api/v2/graph/{collection}", {"$first": str(size)})
            for page in by_link(self._page, first, size):
                objects = [self._object(entity, item) for item in page.items]
                more = page.following is not None
                del page  # the page's envelope and items: its objects are enough
                yield SnapshotPage(entity, objects, resume=entity if more else following)
                del objects  # the next page, of this list or the next, is fetched without it

    def _object(self, entity: str, item: object) -> SnapshotObject:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise MalformedPageError(f"source {self.name!r}: a {entity} without an id")
        return SnapshotObject(item["id"], item, person_of(entity, item["id"], item))


def _resume_index(kinds: list[str], resume: str) -> int:
    if resume == SNAPSHOT_DONE:
        return len(kinds)
    if resume not in kinds:
        raise FatalError(f"cannot resume an Edlink snapshot at {resume!r}")
    return kinds.index(resume)
