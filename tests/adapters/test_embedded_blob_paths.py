"""The embedded blob store refuses names that resolve outside its root through a symlink, for a
folder and for a file, on the inline and the worker-thread paths alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.adapters.embedded_blob import EmbeddedBlobStore


@pytest.mark.parametrize("fsync", [False, True])
async def test_a_symlinked_folder_or_file_pointing_outside_is_refused(tmp_path: Path, fsync: bool) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not yours")
    store = EmbeddedBlobStore(tmp_path / "blobs", fsync=fsync)
    await store.put("turns", "cfo/1.json", b"{}")  # the container exists, a folder is cached as safe
    (tmp_path / "blobs" / "turns" / "escape").symlink_to(outside, target_is_directory=True)
    (tmp_path / "blobs" / "turns" / "cfo" / "link.txt").symlink_to(outside / "secret.txt")

    with pytest.raises(ValueError, match="resolves outside the store"):
        await store.put("turns", "escape/new.txt", b"data")
    assert not (outside / "new.txt").exists()
    for read in (store.get, store.properties):
        with pytest.raises(ValueError, match="resolves outside the store"):
            await read("turns", "cfo/link.txt")
    assert (await store.get("turns", "cfo/1.json")) == b"{}"


@pytest.mark.parametrize("fsync", [False, True])
async def test_a_symlinked_record_folder_pointing_outside_is_refused_with_or_without_a_record(
        tmp_path: Path, fsync: bool) -> None:
    """A blob without a record of its own does not resolve a record folder that is not there, but
    one that is there (a link to elsewhere) is still checked: a put removes a stale record through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1.json.json").write_bytes(b"not yours")
    root = tmp_path / "blobs"
    store = EmbeddedBlobStore(root, fsync=fsync)
    await store.put("turns", "ap/1.json", b"{}", content_type="application/json")  # no record: no folder for one
    assert not (root / ".meta" / "turns" / "ap").exists()
    (root / ".meta" / "turns").mkdir(parents=True)
    (root / ".meta" / "turns" / "cfo").symlink_to(outside, target_is_directory=True)

    for metadata in (None, {"k": "v"}):
        with pytest.raises(ValueError, match="resolves outside the store"):
            await store.put("turns", "cfo/1.json", b"{}", content_type="application/json", metadata=metadata)
    assert sorted(p.name for p in outside.iterdir()) == ["1.json.json"]
    assert (outside / "1.json.json").read_bytes() == b"not yours"
    assert not (root / "turns" / "cfo" / "1.json").exists()


async def test_a_folder_pruned_by_a_delete_is_checked_again_when_it_comes_back(tmp_path: Path) -> None:
    """Deleting a folder's last blob removes the folder and the store forgets it was safe: the same
    path made a symlink pointing outside is refused, and a write over a symlinked file replaces the
    link (it never writes through it)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept.txt").write_bytes(b"untouched")
    store = EmbeddedBlobStore(tmp_path / "blobs", fsync=False)
    await store.put("turns", "cfo/1.json", b"{}")
    await store.delete("turns", "cfo/1.json")
    assert not (tmp_path / "blobs" / "turns" / "cfo").exists()
    (tmp_path / "blobs" / "turns" / "cfo").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="resolves outside the store"):
        await store.put("turns", "cfo/2.json", b"{}")
    assert sorted(p.name for p in outside.iterdir()) == ["kept.txt"]

    await store.put("turns", "ap/1.json", b"{}")
    (tmp_path / "blobs" / "turns" / "ap" / "link.txt").symlink_to(outside / "kept.txt")
    await store.put("turns", "ap/link.txt", b"replaced")
    assert (outside / "kept.txt").read_bytes() == b"untouched"
    assert not (tmp_path / "blobs" / "turns" / "ap" / "link.txt").is_symlink()
    assert await store.get("turns", "ap/link.txt") == b"replaced"


@pytest.mark.parametrize("fsync", [False, True])
async def test_a_blob_whose_name_implies_its_type_and_without_metadata_has_no_record_file(tmp_path: Path,
                                                                                         fsync: bool) -> None:
    """Such a write creates one file, not two (file creation is the costliest part of a small
    write here); what properties report is the same as with a record."""
    root = tmp_path / "blobs"
    store = EmbeddedBlobStore(root, fsync=fsync)
    await store.put("turns", "cfo/1.json", b"{}", content_type="application/json", overwrite=False)
    await store.put("turns", "cfo/2.json", b"{}", content_type="application/json", metadata={"k": "v"})
    recorded = sorted(p.relative_to(root / ".meta").as_posix() for p in (root / ".meta").rglob("*") if p.is_file())
    assert recorded == ["turns/cfo/2.json.json"]
    one = await store.properties("turns", "cfo/1.json")
    assert (one.content_type, dict(one.metadata), one.size) == ("application/json", {}, 2)
    (root / "turns" / "cfo" / "by-hand.txt").write_bytes(b"dropped in")
    assert (await store.properties("turns", "cfo/by-hand.txt")).content_type == "text/plain"
    (root / "turns" / "cfo" / "no-extension").write_bytes(b"?")
    assert (await store.properties("turns", "cfo/no-extension")).content_type == "application/octet-stream"
