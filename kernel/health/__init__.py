"""Liveness and readiness: is the process up, and can it reach what its roles depend on?

``report`` runs checks concurrently under a timeout and turns them into a verdict; ``checks``
knows the dependencies (storage, the bus, model endpoints, MCP servers) and which role uses which;
``blueprint`` serves them to probes and operators in every app; ``cli`` is ``aos health``.
docs/operations.md ("Health") describes the routes and statuses.
"""
