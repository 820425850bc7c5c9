"""Each source kind is one object (``KIND``) from the one registry, and the
mirror gets what it needs of a kind from it without importing a source module."""

from __future__ import annotations

import pytest

from edsync import sources
from edsync.mirror import views
from edsync.normalize import scrub
from tests.unit.test_layout import import_graph


@pytest.mark.parametrize("name", sources.KINDS)
def test_the_registry_hands_out_each_kind_whole(name: str) -> None:
    kind = sources.kind(name)
    assert kind.name == name
    assert sources.settings_class(name) is kind.settings
    assert sources.records(name) is kind.records
    assert kind.person_entity in kind.records.entities
    for entity, (_, fields) in kind.records.entities.items():
        assert [f.type for f in fields].count("person") <= 1, entity


def test_a_name_no_kind_has_gets_no_views_and_keeps_no_string() -> None:
    with pytest.raises(KeyError):
        sources.kind("memory")
    assert sources.records("memory").entities == {}
    assert sources.records("memory").scrub({"a": "/api/applicants/7", "b_id": "x"}) == {}


def test_an_erasure_keeps_what_the_kind_names_things_with() -> None:
    event = {
        "id": "e1",
        "type": "created",
        "target": "enrollment",
        "target_id": "n1",
        "data": {"person_id": "p1", "class_id": "c1", "role": "teacher", "email": "a@b.c"},
    }
    assert sources.kind("edlink").records.scrub(event) == {
        "id": "e1",
        "type": "created",
        "target": "enrollment",
        "target_id": "n1",
        "data": {"person_id": "p1", "class_id": "c1"},
    }
    item = {"id": 1, "applicant": "/api/applicants/7", "name": "Ann", "class_id": "c1"}
    assert sources.kind("dreamapply").records.scrub(item) == {
        "id": 1,
        "applicant": "/api/applicants/7",
    }
    assert scrub(item) == {"id": 1}  # the generic scrub knows no kind's links


def test_the_demo_suggests_its_queries_over_the_views_as_before() -> None:
    kind = sources.kind("dreamapply")
    assert kind.demo is not None
    assert [views.example_sql("dreamapply", kind, e) for e in kind.demo.examples] == [
        "SELECT o.id, o.application_id, a.email FROM dreamapply_offers o "
        "JOIN dreamapply_applicants a ON a.id = o.applicant_id "
        "WHERE o.status = 'Enrolled' AND NOT o.deleted LIMIT 5;",
        "SELECT t.application_id, t.id, t.status FROM dreamapply_tasks t "
        "WHERE NOT t.deleted ORDER BY t.application_id, t.id LIMIT 6;",
    ]


def test_the_mirror_and_the_generic_kind_import_no_source_module() -> None:
    graph = import_graph(deferred=True)
    for module in [m for m in graph if m.startswith("edsync.mirror")] + ["edsync.kinds"]:
        assert not any(name.startswith("edsync.sources") for name in graph[module]), module
