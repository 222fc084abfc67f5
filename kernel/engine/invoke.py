"""Call user functions the way the Python worker does: keyword arguments named by the bindings.

Async functions run on the engine's loop; sync ones in a thread pool (as the worker runs them).
``func.Out`` parameters get a holder whose value the host reads after the call, and a parameter
named ``context`` that no binding claims gets a ``func.Context``, whose trace context continues the
trigger's W3C trace (HTTP ``traceparent`` header, Service Bus ``traceparent`` property), as the host's does.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions import _abc

from .indexing import FunctionSpec


class Out(func.Out):  # type: ignore[type-arg]
    """The value holder behind a ``func.Out[T]`` parameter."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def incoming_traceparent(inputs: dict[str, Any]) -> str | None:
    """The W3C trace context the trigger brought: an HTTP request's ``traceparent`` header, or a
    Service Bus message's ``traceparent`` (or ``Diagnostic-Id``) application property."""
    for value in inputs.values():
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, func.HttpRequest):
            found = first.headers.get("traceparent")
        elif isinstance(first, func.ServiceBusMessage):
            properties = first.application_properties or {}
            found = properties.get("traceparent") or properties.get("Diagnostic-Id")
        else:
            continue
        if isinstance(found, str) and _TRACEPARENT.match(found.strip()) and "0" * 32 not in found:
            return found.strip()
    return None


class _TraceContext(_abc.TraceContext):
    """The invocation's trace context, as the host gives it: a new span in the trigger's trace
    (a new trace when the trigger brought none)."""

    def __init__(self, parent: str | None = None) -> None:
        match = _TRACEPARENT.match(parent) if parent else None
        trace_id, flags = (match.group(1), match.group(3)) if match else (uuid.uuid4().hex, "01")
        self._traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-{flags}"

    @property
    def trace_parent(self) -> str:
        return self._traceparent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}

    # the worker's older names, which apps still use
    Traceparent = trace_parent
    Tracestate = trace_state
    Attributes = attributes


class InvocationContext(func.Context):
    """The ``func.Context`` handed to functions that ask for one."""

    def __init__(self, function_name: str, function_directory: str, traceparent: str | None = None) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = _TraceContext(traceparent)

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return None

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _abc.TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> Any:
        return None


@dataclass
class Invocation:
    """The outcome of one call: the return value and the values set on output bindings."""

    result: Any
    outputs: dict[str, Any] = field(default_factory=dict)


def build_arguments(spec: FunctionSpec, inputs: dict[str, Any], directory: str) -> tuple[dict[str, Any], dict[str, Out]]:
    """Keyword arguments for ``spec``: given inputs, ``Out`` holders, and ``context`` if asked for."""
    kwargs = dict(inputs)
    outs: dict[str, Out] = {}
    for binding in spec.outputs:
        name = str(binding.get("name"))
        if name != "$return":
            outs[name] = Out()
            kwargs[name] = outs[name]
    if "context" in spec.parameters and "context" not in kwargs:
        kwargs["context"] = InvocationContext(spec.name, directory, incoming_traceparent(inputs))
    return {k: v for k, v in kwargs.items() if k in spec.parameters or not spec.parameters}, outs


async def invoke(spec: FunctionSpec, inputs: dict[str, Any], *, executor: Executor | None, directory: str = "") -> Invocation:
    """Run the function; exceptions propagate to the caller, which decides what failure means."""
    kwargs, outs = build_arguments(spec, inputs, directory)
    if spec.is_async:
        result = await spec.user_function(**kwargs)
    else:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, lambda: spec.user_function(**kwargs))
    return Invocation(result=result, outputs={name: holder.get() for name, holder in outs.items()})
