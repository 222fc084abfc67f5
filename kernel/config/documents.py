"""Validated config documents of one kind, kept small and rebuilt when asked for.

A validated pydantic document costs about 5 KB of memory; the compact JSON it was validated from
costs about 500 bytes. With ten thousand agents declared, keeping every document resident would
make the configs the largest thing in the process while almost all of those agents sleep. So a
:class:`Documents` mapping keeps each document as the data it was validated from (compact JSON),
and validates it again when it is read; the most recently read documents stay built.

The JSON is held deflated (zlib) with a preset dictionary per document model: the first
document of that model this process stored. Agents declared side by side share most of their
text (every key, the structure, often whole passages), so an agent's 500 bytes deflate to tens of
bytes; inflating costs about a microsecond, nothing next to validating.

Validating the same data again gives the same document (validation is a pure function of its
input), so callers cannot tell the difference except by identity: two reads of one key may give
two equal objects. Data that JSON cannot carry exactly (a YAML file with a non-string key, say)
keeps its built document instead.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V", bound=BaseModel)

#: Documents kept built, over every kind and every loaded config set (a reload reuses them). A
#: turn reads its agent's config from the entity, not from here; what reads documents (API calls,
#: the gateway's grant checks, policies) reads a few at a time, and building one costs ~15 µs.
BUILT_DOCUMENTS = 128
#: zlib's level for held documents: the dictionary does the work, so the fastest level deflates
#: as small as the best (measured on agent configs: 31 bytes at level 1, 29 at 9).
_LEVEL = 1
#: The preset dictionary per document model (see the module docstring); fixed once chosen, so
#: held bytes stay readable and equal documents are held as equal bytes for the process's life.
_DICTIONARIES: dict[type[BaseModel], bytes] = {}


class Documents(MutableMapping[str, M], Generic[M]):
    """``address -> document`` for one kind; see the module docstring for what is kept."""

    def __init__(self, model: type[M]) -> None:
        self._model = model
        self._stored: dict[str, bytes | M] = {}

    def put_stored(self, key: str, stored: bytes | M) -> None:
        """Hold ``stored`` (from :func:`stored_form`) under ``key``."""
        self._stored[key] = stored

    def stored(self, key: str) -> bytes | M:
        """The entry for ``key`` as it is held (for :meth:`put_stored` of another set)."""
        return self._stored[key]

    def adopt(self, key: str, other: Documents[M]) -> None:
        """Take ``other``'s entry for ``key`` as it is stored (no rebuild)."""
        self._stored[key] = other._stored[key]

    def __getitem__(self, key: str) -> M:
        return built(self._model, self._stored[key])

    def each(self) -> Iterator[tuple[str, M]]:
        """Every ``(key, document)`` in key order, each built for this pass only: a pass over ten
        thousand would otherwise push the documents agents are using out of the recently built."""
        return self.each_as(self._model)  # type: ignore[return-value]

    def each_as(self, view: type[V]) -> Iterator[tuple[str, V | M]]:
        """Like :meth:`each`, but each stored document is validated as ``view``, a model of some of
        its fields that ignores the rest (a document held built is given as it is)."""
        for key in sorted(self._stored):
            stored = self._stored[key]
            yield key, _validated(view, stored, self._model) if isinstance(stored, bytes) else stored

    def __setitem__(self, key: str, document: M) -> None:
        self._stored[key] = document

    def __delitem__(self, key: str) -> None:
        del self._stored[key]

    def __contains__(self, key: object) -> bool:
        return key in self._stored

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)

    def __repr__(self) -> str:
        return f"Documents({self._model.__name__}, {len(self)} documents)"


def stored_form(document: M, data: Any) -> bytes | M:
    """How to hold ``document``, validated from ``data``: ``data`` as compact JSON, deflated, when
    JSON carries it exactly, else ``document`` itself (non-string keys, NaN, sets...)."""
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return document
    if json.loads(text) != data:
        return document
    return _deflated(type(document), text.encode("utf-8"))


def stored_json(model: type[BaseModel], stored: bytes) -> bytes:
    """The compact JSON a held document was validated from."""
    inflater = zlib.decompressobj(zdict=_DICTIONARIES[model])
    return inflater.decompress(stored) + inflater.flush()


def _deflated(model: type[BaseModel], text: bytes) -> bytes:
    deflater = zlib.compressobj(_LEVEL, zdict=_DICTIONARIES.setdefault(model, text))
    return deflater.compress(text) + deflater.flush()


def built(model: type[M], stored: bytes | M) -> M:
    """The document ``stored`` holds (validated again, or taken from the recently built)."""
    if isinstance(stored, bytes):
        return _built(model, stored)  # type: ignore[return-value]
    return stored


def _validated(model: type[BaseModel], stored: bytes, held_as: type[BaseModel] | None = None) -> BaseModel:
    """``stored`` (held as a ``held_as`` document, by default ``model``) validated as ``model``."""
    return model.model_validate(json.loads(stored_json(held_as or model, stored)))


_built = functools.lru_cache(maxsize=BUILT_DOCUMENTS)(_validated)
