"""``EmbeddedBlobStore``: blobs as plain files under a root folder.

Layout under ``root``::

    <container>/<name>                 the blob's bytes ("/" in a name makes subfolders)
    .meta/<container>/<name>.json      content type, metadata and the ETag of those bytes, only for
                                       a blob with metadata or a content type other than its name's
    .tmp/                              temporary files, renamed into place

Writes go to a temporary file that is flushed (and, with ``fsync``, synced to disk) and then
renamed over the blob (``os.replace``), so a reader sees either the old or the new bytes, never a
torn write. Without ``fsync`` a written blob survives the process being killed, not a power cut:
the same guarantee as the engine's SQLite state at ``synchronous=NORMAL`` (``AOS_EMBEDDED_SYNC``,
``kernel/durability.py``). The ETag is a hash of the bytes, so a file dropped into the folder by
hand is a valid blob too. A blob without a record has the content type its name's extension
implies in Python's own table, the same on every machine (``application/json`` for ``.json``;
``application/octet-stream`` when none does), and no metadata: a write that would record exactly
that writes no record, which spares a file creation per write (creating a file costs about 0.2 ms
of kernel time on the development VM, more than the rest of a small write). Container and blob
names follow ``kernel.ports`` checks, which also reject '..' traversal; a name whose folder part
collides with an existing blob ("a" and "a/b") is refused.
Blocking file work runs in a worker thread (``asyncio.to_thread``), except a small write without
``fsync`` and a small blob's properties: a few file-system calls on a local disk take less than
handing them to a thread and back, so they run inline (``INLINE_LIMIT``), taking the store's lock
only if it is free.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import mimetypes
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kernel.ports import AlreadyExists, BlobInfo, NotFound, check_blob_name, check_container_name

DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Writes without ``fsync`` and property reads up to this size run on the caller's thread.
INLINE_LIMIT = 256 * 1024


#: Python's built-in extension table only (not the system's files), so a blob reads the same everywhere.
_BUILT_IN_TYPES = mimetypes.MimeTypes()


@functools.lru_cache(maxsize=64)
def _type_of_suffix(suffix: str) -> str:
    return _BUILT_IN_TYPES.guess_type("blob" + suffix, strict=True)[0] or DEFAULT_CONTENT_TYPE


def implied_content_type(name: str) -> str:
    """The content type of a blob that has no record: the one its name's extension implies."""
    dot = name.rfind(".")
    return _type_of_suffix(name[dot:].lower()) if dot > name.rfind("/") else DEFAULT_CONTENT_TYPE


def _etag(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


@dataclass(frozen=True)
class _Staged:
    """A write's bytes and record in temporary files, ready to be renamed into place."""

    label: str
    path: Path
    meta_path: Path
    data_tmp: Path
    meta_tmp: Path | None  # None: the blob has no record (see implied_content_type)
    etag: str


class EmbeddedBlobStore:
    """The ``BlobStore`` port on the local file system."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self._fsync = fsync
        self._lock = threading.Lock()  # pairs (meta, data) renames with properties() reads
        self._safe_folders: set[Path] = set()  # folders already resolved inside the root

    # paths -------------------------------------------------------------------------------------
    def _paths(self, container: str, name: str, *, reading: bool = True,
               record: bool = True) -> tuple[Path, Path]:
        """The blob's data and record paths, refused when either leads outside the root.
        ``record=False``: the caller only removes a record, if one is there, so a record folder that
        does not exist is not resolved (most blobs have none, and resolving it was a quarter of a
        small put's instructions)."""
        check_container_name(container)
        check_blob_name(name)
        data = self.root / container / name
        meta = self.root / ".meta" / container / (name + ".json")
        for path in (data, meta):
            # A symlinked folder or file pointing outside the root is refused. Folders are resolved
            # once (the names cannot hold '..'); the file itself is resolved when it is a link and
            # will be read (a write renames over the link itself, never through it).
            folder = path.parent
            if folder not in self._safe_folders:
                if path is meta and not record and not folder.is_dir():
                    continue  # nothing to remove there, and nothing is written through it
                if not folder.resolve().is_relative_to(self.root):
                    raise ValueError(f"blob name {name!r} resolves outside the store")
                if folder.is_dir():
                    self._safe_folders.add(folder)
            if reading and path.is_symlink() and not path.resolve().is_relative_to(self.root):
                raise ValueError(f"blob name {name!r} resolves outside the store")
        return data, meta

    # port --------------------------------------------------------------------------------------
    async def put(self, container: str, name: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE,
                  overwrite: bool = True, metadata: Mapping[str, str] | None = None) -> str:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"blob data must be bytes, got {type(data).__name__}")
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        if self._fsync or len(data) > INLINE_LIMIT:
            return await asyncio.to_thread(self._put, container, name, bytes(data), content_type, overwrite, meta)
        staged = self._stage(container, name, bytes(data), content_type, meta)
        if self._lock.acquire(blocking=False):  # else a reader in a worker holds it: wait there
            try:
                return self._commit(staged, overwrite)
            finally:
                self._lock.release()
        return await asyncio.to_thread(self._commit_locked, staged, overwrite)

    async def get(self, container: str, name: str) -> bytes:
        return await asyncio.to_thread(self._get, container, name)

    async def properties(self, container: str, name: str) -> BlobInfo:
        path, meta_path = self._paths(container, name)
        try:
            size = path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"blob {container}/{name} not found") from None
        if size <= INLINE_LIMIT and self._lock.acquire(blocking=False):  # small: read it here
            try:
                return self._read_properties(container, name, path, meta_path)
            finally:
                self._lock.release()
        return await asyncio.to_thread(self._properties, container, name)

    async def exists(self, container: str, name: str) -> bool:
        data, _ = self._paths(container, name)
        return await asyncio.to_thread(data.is_file)

    async def list(self, container: str, prefix: str = "") -> list[str]:
        check_container_name(container)
        return await asyncio.to_thread(self._list, container, prefix)

    async def delete(self, container: str, name: str) -> None:
        await asyncio.to_thread(self._delete, container, name)

    async def close(self) -> None:
        return None

    # blocking work ----------------------------------------------------------------------------
    def _put(self, container: str, name: str, data: bytes, content_type: str, overwrite: bool,
             metadata: dict[str, str]) -> str:
        return self._commit_locked(self._stage(container, name, data, content_type, metadata), overwrite)

    def _stage(self, container: str, name: str, data: bytes, content_type: str,
               metadata: dict[str, str]) -> "_Staged":
        """Check the name and write the bytes and their record to temporary files."""
        recorded = bool(metadata) or content_type != implied_content_type(name)
        path, meta_path = self._paths(container, name, reading=False, record=recorded)
        etag = _etag(data)
        if path.parent not in self._safe_folders:  # a folder known to be one has no blob on its way
            for parent in path.parents:
                if parent == self.root:
                    break
                if parent.is_file():
                    raise ValueError(f"cannot store blob {container}/{name}: {parent.relative_to(self.root / container)} "
                                     "is a blob, and the embedded store keeps blobs as files")
        if path.is_dir():
            raise ValueError(f"cannot store blob {container}/{name}: blobs exist under {name}/ "
                             "(the embedded store keeps blobs as files)")
        tmp_dir = self.root / ".tmp"
        for folder in (path.parent, meta_path.parent, tmp_dir) if recorded else (path.parent, tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        data_tmp = self._write_temp(tmp_dir, data)
        meta_tmp = None
        if recorded:
            try:
                record = json.dumps({"etag": etag, "content_type": content_type, "metadata": metadata}).encode()
                meta_tmp = self._write_temp(tmp_dir, record)
            except BaseException:
                data_tmp.unlink(missing_ok=True)
                raise
        return _Staged(f"{container}/{name}", path, meta_path, data_tmp, meta_tmp, etag)

    def _commit_locked(self, staged: "_Staged", overwrite: bool) -> str:
        with self._lock:
            return self._commit(staged, overwrite)

    def _commit(self, staged: "_Staged", overwrite: bool) -> str:
        """Rename the staged files into place (the caller holds ``self._lock``)."""
        try:
            if not overwrite:
                try:  # link is atomic and fails if the target exists: create-only semantics
                    os.link(staged.data_tmp, staged.path)
                except FileExistsError:
                    raise AlreadyExists(f"blob {staged.label} already exists") from None
                self._place_record(staged)
            else:
                self._place_record(staged)
                os.replace(staged.data_tmp, staged.path)
        finally:
            for leftover in (staged.data_tmp, staged.meta_tmp):
                if leftover is not None:
                    leftover.unlink(missing_ok=True)
        return staged.etag

    @staticmethod
    def _place_record(staged: "_Staged") -> None:
        """Put the blob's record in place, or remove an earlier one the new bytes must not inherit."""
        if staged.meta_tmp is not None:
            os.replace(staged.meta_tmp, staged.meta_path)
        else:
            try:
                os.unlink(staged.meta_path)
            except (FileNotFoundError, NotADirectoryError):
                pass

    def _write_temp(self, folder: Path, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(dir=folder, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if self._fsync:
                    os.fsync(handle.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    def _get(self, container: str, name: str) -> bytes:
        path, _ = self._paths(container, name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"blob {container}/{name} not found") from None

    def _properties(self, container: str, name: str) -> BlobInfo:
        path, meta_path = self._paths(container, name)
        with self._lock:
            return self._read_properties(container, name, path, meta_path)

    def _read_properties(self, container: str, name: str, path: Path, meta_path: Path) -> BlobInfo:
        """The blob's properties (the caller holds ``self._lock``: a put renames the pair under it)."""
        try:
            data = path.read_bytes()
            modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"blob {container}/{name} not found") from None
        try:
            record = json.loads(meta_path.read_bytes())
        except (FileNotFoundError, ValueError):
            record = {}
        etag = _etag(data)
        if record.get("etag") != etag:  # dropped in by hand, or written by something else
            record = {}
        return BlobInfo(name=name, etag=etag, size=len(data),
                        content_type=record.get("content_type") or implied_content_type(name),
                        metadata=dict(record.get("metadata", {})), last_modified=modified)

    def _list(self, container: str, prefix: str) -> list[str]:
        base = self.root / container
        names: list[str] = []
        for folder, _dirs, files in os.walk(base):
            relative = Path(folder).relative_to(base).as_posix()
            for file in files:
                name = file if relative == "." else f"{relative}/{file}"
                if name.startswith(prefix):
                    names.append(name)
        return sorted(names)

    def _delete(self, container: str, name: str) -> None:
        path, meta_path = self._paths(container, name)
        with self._lock:
            try:
                if path.is_dir():
                    raise FileNotFoundError
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(f"blob {container}/{name} not found") from None
            meta_path.unlink(missing_ok=True)
        for stop, start in ((self.root / container, path.parent), (self.root / ".meta" / container, meta_path.parent)):
            folder = start
            while folder != stop and folder.is_relative_to(stop):
                try:
                    folder.rmdir()  # only succeeds when empty
                except OSError:
                    break
                self._safe_folders.discard(folder)  # resolved again if it comes back
                folder = folder.parent
