"""The BlobStore contract: the embedded store and Azure Blob storage (on Azurite) behave alike."""

from __future__ import annotations

import asyncio

import pytest

from kernel.ports import AlreadyExists, BlobStore, NotFound


async def test_is_a_blob_store(blob_store: BlobStore) -> None:
    assert isinstance(blob_store, BlobStore)


async def test_put_then_get_creates_the_container(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    etag = await blob_store.put(container, "turns/0001.json", b'{"n": 1}', content_type="application/json")
    assert isinstance(etag, str) and etag
    assert await blob_store.get(container, "turns/0001.json") == b'{"n": 1}'
    assert await blob_store.exists(container, "turns/0001.json")
    assert not await blob_store.exists(container, "turns/0002.json")


async def test_properties_carry_content_type_metadata_and_etag(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    etag = await blob_store.put(container, "a.json", b"[1, 2]", content_type="application/json",
                                metadata={"agent": "cfo", "turn": "7"})
    info = await blob_store.properties(container, "a.json")
    assert (info.name, info.etag, info.size, info.content_type) == ("a.json", etag, 6, "application/json")
    assert dict(info.metadata) == {"agent": "cfo", "turn": "7"}
    assert info.last_modified.tzinfo is not None
    plain = await blob_store.put(container, "b.bin", b"")
    info = await blob_store.properties(container, "b.bin")
    assert (info.etag, info.size, info.content_type, dict(info.metadata)) == (plain, 0, "application/octet-stream", {})


async def test_an_overwrite_keeps_nothing_of_the_old_content_type_and_metadata(blob_store: BlobStore,
                                                                                unique: str) -> None:
    container = f"c-{unique}"
    await blob_store.put(container, "t.json", b"{}", content_type="text/plain", metadata={"agent": "cfo"})
    await blob_store.put(container, "t.json", b"{}", content_type="application/json")
    info = await blob_store.properties(container, "t.json")
    assert (info.content_type, dict(info.metadata)) == ("application/json", {})
    await blob_store.put(container, "t.json", b"{}")  # no content type given: the default, as Azure does
    assert (await blob_store.properties(container, "t.json")).content_type == "application/octet-stream"


async def test_overwrite_replaces_and_changes_the_etag(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    first = await blob_store.put(container, "x", b"one")
    second = await blob_store.put(container, "x", b"two")
    assert first != second
    assert await blob_store.get(container, "x") == b"two"


async def test_overwrite_false_refuses_an_existing_blob(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    await blob_store.put(container, "once", b"first", overwrite=False)
    with pytest.raises(AlreadyExists):
        await blob_store.put(container, "once", b"second", overwrite=False)
    assert await blob_store.get(container, "once") == b"first"


async def test_create_only_races_have_one_winner(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    await blob_store.put(container, "warmup", b"")
    results = await asyncio.gather(
        *(blob_store.put(container, "claim", str(i).encode(), overwrite=False) for i in range(5)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if not isinstance(r, str))


async def test_list_is_sorted_and_filters_by_prefix(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    for name in ["b/2", "a/1", "b/1", "b/sub/3", "c"]:
        await blob_store.put(container, name, name.encode())
    assert await blob_store.list(container) == ["a/1", "b/1", "b/2", "b/sub/3", "c"]
    assert await blob_store.list(container, prefix="b/") == ["b/1", "b/2", "b/sub/3"]
    assert await blob_store.list(container, prefix="b/s") == ["b/sub/3"]
    assert await blob_store.list(container, prefix="zzz") == []
    assert await blob_store.list(f"missing-{unique}") == []


async def test_delete_and_not_found(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    await blob_store.put(container, "deep/er/blob", b"x")
    await blob_store.delete(container, "deep/er/blob")
    assert not await blob_store.exists(container, "deep/er/blob")
    assert await blob_store.list(container) == []
    with pytest.raises(NotFound):
        await blob_store.delete(container, "deep/er/blob")
    with pytest.raises(NotFound):
        await blob_store.get(container, "deep/er/blob")
    with pytest.raises(NotFound):
        await blob_store.properties(container, "nothing")
    with pytest.raises(NotFound):
        await blob_store.get(f"missing-{unique}", "x")
    assert not await blob_store.exists(f"missing-{unique}", "x")


async def test_binary_and_unicode_names_round_trip(blob_store: BlobStore, unique: str) -> None:
    container = f"c-{unique}"
    data = bytes(range(256)) * 100
    await blob_store.put(container, "agents/cfo/mémoire 1.bin", data)
    assert await blob_store.get(container, "agents/cfo/mémoire 1.bin") == data
    assert await blob_store.list(container, prefix="agents/") == ["agents/cfo/mémoire 1.bin"]


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/abs", "a//b", "a/./b", "trailing/", "back\\slash", ""])
async def test_unsafe_names_are_rejected(blob_store: BlobStore, unique: str, name: str) -> None:
    with pytest.raises(ValueError):
        await blob_store.put(f"c-{unique}", name, b"x")


@pytest.mark.parametrize("container", ["UPPER", "ab", "under_score", "-lead", "double--hyphen"])
async def test_invalid_container_names_are_rejected(blob_store: BlobStore, container: str) -> None:
    with pytest.raises(ValueError):
        await blob_store.put(container, "x", b"x")
