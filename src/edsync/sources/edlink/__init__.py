"""The Edlink source kind (``KIND``): the Graph event stream (``stream``,
``EdlinkSource``), the snapshot of its lists (``snapshot``), the client and
settings both share (``graph``), how its refusals become edsync's errors
(``refusals``), and its records' views and erasures (``fields``)."""

from edsync.kinds import Kind
from edsync.sources.edlink.fields import RECORDS
from edsync.sources.edlink.graph import PERSON_ENTITY, Settings
from edsync.sources.edlink.refusals import IntegrationStateError, refusal_error
from edsync.sources.edlink.stream import EdlinkSource, create, pattern_problem

__all__ = [
    "KIND",
    "EdlinkSource",
    "IntegrationStateError",
    "Settings",
    "create",
    "pattern_problem",
    "refusal_error",
]

KIND = Kind(
    name="edlink",
    settings=Settings,
    create=create,
    pattern_problem=pattern_problem,
    person_entity=PERSON_ENTITY,
    records=RECORDS,
)
