"""Config documents are held compactly and built again when read: what a reader gets must not change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from kernel.config import load_configs
from kernel.config.documents import BUILT_DOCUMENTS, Documents, stored_form, stored_json
from kernel.config.models import AgentConfig
from kernel.config.store import ConfigStore


def _agent(agent_id: str, **fields: object) -> dict[str, object]:
    return {"kind": "agent", "id": agent_id, "display_name": agent_id.title(),
            "purpose": f"Keep the {agent_id} ledger current and explain changes.",
            "goals": [{"id": "current", "description": "Post every entry within a day.", "priority": 1}],
            "subscriptions": [{"event_types": [f"{agent_id}.*"]}], **fields}


def test_every_read_gives_the_document_the_file_validates_to_even_after_many_others(tmp_path: Path) -> None:
    count = BUILT_DOCUMENTS + 40  # more than are kept built: the first ones are built again when read
    for n in range(count):
        (tmp_path / f"a{n:04d}.json").write_text(json.dumps(_agent(f"a{n:04d}", display_name=f"Agent {n}")))
    configs = load_configs([tmp_path])
    assert configs.ok and len(configs.agents) == count
    for n in (0, 1, count - 1):
        first = configs.agents[f"a{n:04d}"]
        expected = AgentConfig.model_validate(_agent(f"a{n:04d}", display_name=f"Agent {n}"))
        assert first == expected
        for other in range(count):  # every other document read in between
            configs.agents[f"a{other:04d}"]
        assert configs.agents[f"a{n:04d}"] == expected
    assert [agent.id for agent in configs.agents.values()] == sorted(f"a{n:04d}" for n in range(count))


class _Note(BaseModel):  # a model of this test's own, so its dictionary is its first document here
    title: str
    body: str
    tags: list[str]


def test_documents_of_one_model_are_held_deflated_and_read_back_exactly() -> None:
    data = [{"title": f"Note {n}", "body": "Keep the ledger current and explain every change to the owner.",
             "tags": ["ledger", f"n{n}"]} for n in range(50)]
    documents: Documents[_Note] = Documents(_Note)
    for n, item in enumerate(data):
        documents.put_stored(f"n{n}", stored_form(_Note.model_validate(item), item))
    held = [documents._stored[f"n{n}"] for n in range(50)]
    texts = [stored_json(_Note, stored) for stored in held]
    assert [json.loads(text) for text in texts] == data
    assert [documents[f"n{n}"] for n in range(50)] == [_Note.model_validate(item) for item in data]
    assert sum(map(len, held[1:])) * 3 < sum(map(len, texts[1:])), "similar documents deflate against the first"


def test_a_yaml_document_is_read_back_with_its_yaml_types(tmp_path: Path) -> None:
    (tmp_path / "clerk.yaml").write_text(
        "kind: agent\n"
        "id: clerk\n"
        "display_name: no\n"             # a string, not the boolean YAML 1.1 would make of it
        "purpose: Keep the clerk ledger current and explain changes.\n"
        "enabled: false\n"
        "subscriptions:\n"
        "  - event_types: ['ledger.*', 'invoice.paid']\n")
    agent = load_configs([tmp_path]).agents["clerk"]
    assert (agent.display_name, agent.enabled) == ("no", False)
    assert agent.subscriptions[0].event_types == ["ledger.*", "invoice.paid"]


class _Lookup(BaseModel):
    codes: dict[int, str]
    ratio: float


@pytest.mark.parametrize("data", [{"codes": {1: "one"}, "ratio": 0.5}, {"codes": {}, "ratio": float("nan")}],
                         ids=["non-string key", "NaN"])
def test_data_json_cannot_carry_exactly_keeps_its_built_document(data: dict[str, object]) -> None:
    document = _Lookup.model_validate(data)
    documents: Documents[_Lookup] = Documents(_Lookup)
    documents.put_stored("x", stored_form(document, data))
    assert documents["x"] is document  # JSON would have turned 1 into "1" and refused NaN: kept as built


def test_data_json_carries_is_held_as_json_and_built_equal() -> None:
    data = {"codes": {}, "ratio": 0.1}
    document = _Lookup.model_validate(data)
    stored = stored_form(document, data)
    assert stored_json(_Lookup, stored) == b'{"codes":{},"ratio":0.1}'
    documents: Documents[_Lookup] = Documents(_Lookup)
    documents.put_stored("x", stored)
    assert documents["x"] == document and "x" in documents and list(documents) == ["x"] and len(documents) == 1


def test_a_broken_edit_keeps_the_last_good_document_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "clerk.json"
    path.write_text(json.dumps(_agent("clerk", display_name="Clerk")))
    store = ConfigStore([tmp_path], recheck_seconds=0)
    assert store.current().agents["clerk"].display_name == "Clerk"
    path.write_text('{"kind": "agent", "id": "clerk", "purpose": ')  # half-written
    current = store.current()
    assert not current.ok
    assert current.agents["clerk"].display_name == "Clerk"


def test_a_duplicate_names_the_line_of_the_first_documents_id(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("# the ledger clerk\nkind: agent\n\nid: clerk\ndisplay_name: Clerk\n"
                                     "purpose: Keep the clerk ledger current and explain changes.\n")
    (tmp_path / "b.json").write_text(json.dumps(_agent("clerk")))
    configs = load_configs([tmp_path])
    duplicate = next(p for p in configs.problems if p.code == "duplicate-id")
    assert duplicate.file.endswith("b.json")
    assert f"already defined in {tmp_path / 'a.yaml'}:4" in duplicate.message
    assert configs.source("agent", "clerk").line == 4
