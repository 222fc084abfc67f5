"""A reload reads only the files that changed, and still gives what a full load of the folder gives."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kernel.config import load_configs
from kernel.config.loader import ConfigSet
from kernel.config.store import ConfigStore

REPO = Path(__file__).resolve().parents[2]


def _agent(agent_id: str, **fields: object) -> dict[str, object]:
    return {"kind": "agent", "id": agent_id, "display_name": agent_id.title(),
            "purpose": f"Keep the {agent_id} ledger current and explain changes.",
            "goals": [{"id": "current", "description": "Post every entry within a day.", "priority": 1}],
            "subscriptions": [{"event_types": [f"{agent_id}.*"]}], **fields}


def _write(path: Path, document: dict[str, object]) -> None:
    path.write_text(json.dumps(document))


def _same_stamp_rewrite(path: Path, text: str) -> None:
    """Replace ``path``'s bytes with ``text`` of the same length, keeping its modification time:
    a file the store must take as unchanged (the stamp a fingerprint is made of)."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def _described(configs: ConfigSet) -> dict[str, object]:
    """Everything a reader of a config set can see, in comparable form."""
    documents = {kind: {address: configs.by_kind(kind)[address].model_dump(mode="json")
                        for address in sorted(configs.by_kind(kind))}
                 for kind in ("agent", "adapter", "mcp_server", "inference_endpoint", "policy", "namespace",
                              "workflow")}
    return {"documents": documents,
            "sources": {f"{kind}/{address}": (source.file, source.version)
                        for (kind, address), source in sorted(configs.sources.items())},
            "problems": sorted(json.dumps(problem.to_dict(), sort_keys=True) for problem in configs.problems),
            "files": configs.files}


def test_a_reload_takes_unchanged_files_as_they_loaded_and_reads_the_changed_one(tmp_path: Path) -> None:
    for name in ("clerk", "auditor", "planner"):
        _write(tmp_path / f"{name}.json", _agent(name, display_name=name.title()))
    store = ConfigStore([tmp_path], recheck_seconds=0)
    assert store.current().agents["auditor"].display_name == "Auditor"

    # The auditor's bytes change behind the store's back, its stamp does not: it is not read again.
    auditor = tmp_path / "auditor.json"
    _same_stamp_rewrite(auditor, auditor.read_text().replace('"Auditor"', '"AUDITOR"'))
    _write(tmp_path / "clerk.json", _agent("clerk", display_name="Head clerk"))
    current = store.current()
    assert current.agents["clerk"].display_name == "Head clerk"
    assert current.agents["auditor"].display_name == "Auditor"
    assert current.agents["planner"].display_name == "Planner"

    _touch(auditor)  # now its stamp changed too: read again
    assert store.current().agents["auditor"].display_name == "AUDITOR"


def test_a_reload_of_the_sample_configs_equals_a_full_load(tmp_path: Path) -> None:
    for folder in ("agent_configs", "mcp_configs", "workflow_configs"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    paths = [tmp_path / folder for folder in ("agent_configs", "mcp_configs", "workflow_configs")]
    store = ConfigStore(paths, recheck_seconds=0)
    first = store.current()
    assert first.agents and first.mcp_servers and first.namespaces and first.workflows

    cfo = tmp_path / "agent_configs" / "cfo.yaml"
    cfo.write_text(cfo.read_text().replace("display_name: ", "display_name: Acting ", 1))
    reloaded = store.current()
    assert reloaded.agents["cfo"].display_name.startswith("Acting ")
    assert _described(reloaded) == _described(load_configs(paths))


def test_an_unchanged_agent_is_checked_again_when_a_server_it_uses_goes(tmp_path: Path) -> None:
    (tmp_path / "mcp_configs").mkdir()  # the folder gives the server file its kind
    shutil.copy(REPO / "mcp_configs" / "memory.yaml", tmp_path / "mcp_configs" / "memory.yaml")
    _write(tmp_path / "keeper.json", _agent("keeper", tools=[{"server": "memory"}]))
    _write(tmp_path / "clerk.json", _agent("clerk"))
    store = ConfigStore([tmp_path], recheck_seconds=0)
    assert "keeper" in store.current().agents and store.current().ok

    (tmp_path / "mcp_configs" / "memory.yaml").unlink()
    current = store.current()
    dangling = [p for p in current.problems if p.code == "dangling-reference"]
    assert dangling and dangling[0].file.endswith("keeper.json") and "memory" in dangling[0].message
    assert "keeper" in current.agents  # on its last good config, as after any edit that breaks it


def test_an_unchanged_file_with_a_problem_reports_it_at_every_reload(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"kind": "agent", "id": "broken", "purpose": ')
    _write(tmp_path / "clerk.json", _agent("clerk"))
    store = ConfigStore([tmp_path], recheck_seconds=0)
    assert [p.file for p in store.current().errors] == [str(tmp_path / "broken.json")]

    _write(tmp_path / "clerk.json", _agent("clerk", display_name="Head clerk"))
    current = store.current()
    assert current.agents["clerk"].display_name == "Head clerk"
    assert [p.file for p in current.errors] == [str(tmp_path / "broken.json")]

    _write(tmp_path / "broken.json", _agent("broken"))
    assert "broken" in store.current().agents and store.current().ok
