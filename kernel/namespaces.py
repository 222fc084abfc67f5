"""Tenant namespaces: how a document's id becomes the address the platform stores and routes by.

Every config document belongs to a namespace (``default`` when it says none). Ids are unique per
kind and namespace, so two applications may each have an agent ``analyst``. Everywhere the
platform keys state or routes messages — entity keys, the registry, archive paths, audit chains,
an envelope's ``to`` and ``source`` — it uses the *address*:

* ``<id>`` in the ``default`` namespace (so state from before namespaces existed is unchanged);
* ``<namespace>.<id>`` elsewhere (ids cannot contain ``.``, so this is unambiguous).

A reference written inside a document (an agent's ``tools[].server``, an event's ``to`` sent by
an agent) is resolved in the writer's namespace; ``other.x`` names namespace ``other`` explicitly,
and crossing into another namespace is allowed only when the writer's ``kind: namespace``
document grants it with a route (:func:`routed`).

Pure string and config logic: no I/O, so the turn orchestration may use it too.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the config models import this module
    from kernel.config.models import NamespaceConfig

__all__ = [
    "DEFAULT",
    "SEPARATOR",
    "RouteKind",
    "address_of",
    "event_namespace",
    "namespace_of",
    "qualify",
    "resolve",
    "route_refusal",
    "routed",
    "split",
    "visible",
]

DEFAULT = "default"
SEPARATOR = "."
RouteKind = Literal["agents", "tools", "workflows"]


def qualify(namespace: str, doc_id: str) -> str:
    """The address of ``doc_id`` in ``namespace``: the bare id in the default namespace."""
    return doc_id if namespace == DEFAULT else f"{namespace}{SEPARATOR}{doc_id}"


def split(address: str) -> tuple[str, str]:
    """``(namespace, id)`` of an address (``"acme.analyst"`` → ``("acme", "analyst")``)."""
    namespace, separator, doc_id = address.partition(SEPARATOR)
    return (namespace, doc_id) if separator else (DEFAULT, address)


def namespace_of(address: str) -> str:
    return split(address)[0]


def resolve(namespace: str, reference: str) -> str:
    """The address a reference written in ``namespace`` names: its own namespace unless qualified."""
    target, separator, doc_id = reference.partition(SEPARATOR)
    return qualify(target, doc_id) if separator else qualify(namespace, reference)


def address_of(document: Any) -> str:
    """A document's address (namespace documents are addressed by their id)."""
    from kernel.config.models import NamespaceConfig, document_id

    if isinstance(document, NamespaceConfig):
        return document.id
    return qualify(getattr(document, "namespace", DEFAULT), document_id(document))


def _matches(kind: RouteKind, name: str, pattern: str) -> bool:
    if kind == "tools" and SEPARATOR not in name:  # a whole server: 'github' or 'github.*' grants it
        return fnmatch.fnmatchcase(name, pattern) or pattern == f"{name}{SEPARATOR}*"
    return fnmatch.fnmatchcase(name, pattern)


def routed(namespaces: Mapping[str, NamespaceConfig], source: str, target: str, kind: RouteKind, name: str) -> bool:
    """Whether namespace ``source`` may reach ``name`` (an agent or workflow id, or ``server`` /
    ``server.tool``) of namespace ``target``: always within one namespace, else only through a
    route of ``source``'s namespace document."""
    if source == target:
        return True
    document = namespaces.get(source)
    if document is None:
        return False
    return any(route.to == target and any(_matches(kind, name, pattern) for pattern in getattr(route, kind))
               for route in document.routes)


def route_refusal(source: str, target: str, kind: RouteKind, name: str) -> str:
    """Why a crossing is refused, naming the route that would allow it."""
    what = {"agents": "agent", "tools": "tool", "workflows": "workflow"}[kind]
    return (f"namespace '{source}' has no route to {what} '{name}' of namespace '{target}' "
            f"(add routes: [{{to: {target}, {kind}: ['{name}']}}] to namespace '{source}')")


def event_namespace(envelope: Any, agents: Mapping[str, Any]) -> str:
    """The namespace an event belongs to: the sending agent's when an agent sent it (it cannot
    claim another), else the envelope's ``namespace``, else ``default``."""
    source = getattr(envelope, "source", None)
    if source in agents:
        return namespace_of(source)
    return getattr(envelope, "namespace", None) or DEFAULT


def visible(allowed: frozenset[str] | None, address: str) -> bool:
    """Whether a caller allowed ``allowed`` namespaces (``None``: all) may see ``address``."""
    return allowed is None or namespace_of(address) in allowed
