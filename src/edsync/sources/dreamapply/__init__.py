"""The DreamApply source kind (``KIND``): the journal reader (``journal``),
the full snapshot (``snapshot``), the resources a refresh reads
(``resources``), the links all of them follow (``links``), and its records'
views and erasures (``fields``)."""

from edsync.kinds import Kind
from edsync.sources.dreamapply.fields import DEMO, RECORDS
from edsync.sources.dreamapply.journal import PERSON_ENTITY, Settings, create, pattern_problem

KIND = Kind(
    name="dreamapply",
    settings=Settings,
    create=create,
    pattern_problem=pattern_problem,
    person_entity=PERSON_ENTITY,
    records=RECORDS,
    demo=DEMO,
)
