"""Which agents an event wakes: the one it is addressed to, or every agent subscribed to its type.

Pure: the wake function gives it the parsed envelope and the agents declared in config. An agent
never wakes itself through a subscription (its own broadcast would loop), and an event addressed
to an agent that does not exist is reported as such, so the caller records it instead of
dropping it. A disabled agent receives events addressed to it (it is paused, and its inbox keeps
them) but no broadcasts, as its subscription rules are not deployed either.

Namespaces: ``to`` is an agent's address (``kernel.namespaces``); a broadcast reaches the
subscribers of its own namespace (``event_namespace``: the sending agent's, else the envelope's
``namespace``, else ``default``) and those of other namespaces only where the event's namespace
has a route to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kernel import namespaces as ns
from kernel.config.models import DEFAULT_EVENTS_TOPIC, AgentConfig, NamespaceConfig
from kernel.config.subscribers import Subscribers
from kernel.messages import Envelope


@dataclass(frozen=True)
class Routing:
    agents: list[str] = field(default_factory=list)
    unknown_agent: str | None = None


def route(envelope: Envelope, agents: Mapping[str, AgentConfig], topic: str = DEFAULT_EVENTS_TOPIC,
          namespaces: Mapping[str, NamespaceConfig] | None = None,
          subscribers: Callable[[], Subscribers] | None = None) -> Routing:
    """``agents`` by address; ``namespaces`` (the namespace documents) for routes between namespaces;
    ``subscribers``: gives the agents' subscriptions indexed (``ConfigSet.subscribers``), asked only
    for a broadcast; without it they are indexed for this call."""
    if envelope.to:
        if envelope.to in agents:
            return Routing([envelope.to])
        return Routing([], unknown_agent=envelope.to)
    origin = ns.event_namespace(envelope, agents)
    index = subscribers() if subscribers is not None else Subscribers(agents.items())
    candidates = index.of(topic, envelope.type)
    matched = []
    for address in candidates:
        namespace, agent_id = ns.split(address)
        if address != envelope.source and ns.routed(namespaces or {}, origin, namespace, "agents", agent_id):
            matched.append(address)
    return Routing(matched)

