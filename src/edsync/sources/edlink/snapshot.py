"""Edlink's bootstrap (SPEC 2.2): every current object from the Graph list
endpoints, list by list, in the order Edlink recommends."""

from __future__ import annotations

from collections.abc import Iterator

from edsync.errors import FatalError, MalformedPageError
from edsync.model import SNAPSHOT_DONE, Cursor, SnapshotObject, SnapshotPage
from edsync.sources.edlink.graph import GraphReader, person_of
from edsync.sources.edlink.refusals import REFUSALS

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
        for index, (entity, collection) in enumerate(COLLECTIONS[start:], start):
            following = kinds[index + 1] if index + 1 < len(kinds) else SNAPSHOT_DONE
            url = f"/api/v2/graph/{collection}"
            params: dict[str, str] | None = {"$first": str(self.settings.page_size)}
            while True:
                reply, body = self.http.fetch("GET", url, params, self._read(), expect=REFUSALS)
                objects = [self._object(entity, item) for item in self._data(reply, body)]
                link = body.get("$next") if isinstance(body, dict) else None
                next_url = link if isinstance(link, str) and objects else ""
                del reply, body  # the page's bytes and envelope: its objects are enough
                yield SnapshotPage(entity, objects, resume=entity if next_url else following)
                del objects  # the next page, of this list or the next, is fetched without it
                if not next_url:
                    break
                url, params = next_url, None

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
