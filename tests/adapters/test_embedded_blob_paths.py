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
