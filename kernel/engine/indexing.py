"""Index a v2-model app the way the Python worker does: ``get_functions()`` once, raw bindings.

The result is a plain binding model the rest of the engine dispatches on. Anything the engine
cannot honour is refused here, at startup, naming the function and the binding, instead of
being silently ignored at run time.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import azure.functions as func

from .settings import Settings, SettingsError

TRIGGERS = {"httpTrigger", "orchestrationTrigger", "activityTrigger", "entityTrigger", "serviceBusTrigger", "timerTrigger",
            "mcpToolTrigger"}  # mcpToolTrigger: served as one MCP server by mcp_webhook.py
OTHER_BINDINGS = {("http", "OUT"), ("durableClient", "IN"), ("serviceBus", "OUT")}
_EXPRESSION_KEYS = ("topicName", "queueName", "subscriptionName", "schedule")


class IndexingError(ValueError):
    """The app cannot be loaded or uses something the embedded engine does not support."""


class UnsupportedBindingError(IndexingError):
    """A function uses a trigger or binding type the engine does not implement."""


@dataclass
class FunctionSpec:
    """One indexed function: its trigger, its bindings (expressions resolved) and its code."""

    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Callable[..., Any]
    parameters: tuple[str, ...]
    is_async: bool
    durable_name: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    def binding(self, type_: str) -> dict[str, Any] | None:
        return next((b for b in self.bindings if b.get("type") == type_), None)


@dataclass
class AppIndex:
    """Every function of an app, with lookups by durable role."""

    functions: dict[str, FunctionSpec]
    app_dir: Path | None
    orchestrators: dict[str, FunctionSpec] = field(default_factory=dict)
    activities: dict[str, FunctionSpec] = field(default_factory=dict)
    entities: dict[str, FunctionSpec] = field(default_factory=dict)

    def by_trigger(self, trigger_type: str) -> list[FunctionSpec]:
        return [f for f in self.functions.values() if f.trigger_type == trigger_type]


def load_app(app: Any) -> tuple[func.FunctionRegister, Path | None]:
    """Accept an app object, an importable module path or a file path; return the app and its folder."""
    if isinstance(app, func.FunctionRegister):
        module = sys.modules.get(getattr(type(app), "__module__", ""), None)
        return app, _module_dir(module)
    if isinstance(app, ModuleType):
        return _find_app(app), _module_dir(app)
    if not isinstance(app, (str, Path)):
        raise IndexingError(f"cannot load an app from {app!r}: pass a FunctionApp, a module path or a file path")
    text = str(app)
    path = Path(text)
    if text.endswith(".py") or path.is_file() or path.is_dir():
        if path.is_dir():
            path = path / "function_app.py"
        if not path.is_file():
            raise IndexingError(f"app file {path} does not exist")
        module = _import_file(path.resolve())
    else:
        try:
            module = importlib.import_module(text)
        except ModuleNotFoundError as error:
            raise IndexingError(f"cannot import app module '{text}': {error}") from error
    return _find_app(module), _module_dir(module)


def _import_file(path: Path) -> ModuleType:
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    for candidate in (path.stem, f"_aos_app_{abs(hash(str(path)))}"):
        existing = sys.modules.get(candidate)
        if existing is not None and getattr(existing, "__file__", None) == str(path):
            return existing
    name = path.stem if path.stem not in sys.modules else f"_aos_app_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise IndexingError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _module_dir(module: ModuleType | None) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve().parent if file else None


def _find_app(module: ModuleType) -> func.FunctionRegister:
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if not apps:
        raise IndexingError(f"module '{module.__name__}' defines no FunctionApp (func.FunctionApp or df.DFApp)")
    if len(apps) > 1:
        raise IndexingError(f"module '{module.__name__}' defines {len(apps)} FunctionApp objects; the worker accepts exactly one")
    return apps[0]


_BUILT: dict[int, tuple[func.FunctionRegister, list[Any]]] = {}


def built_functions(app: func.FunctionRegister) -> list[Any]:
    """``app.get_functions()``, called once per app object (a second call fails in the SDK)."""
    cached = _BUILT.get(id(app))
    if cached is None or cached[0] is not app:
        cached = (app, app.get_functions())
        _BUILT[id(app)] = cached
    return cached[1]


def index_app(app: func.FunctionRegister, app_dir: Path | None, settings: Settings) -> AppIndex:
    """Build the binding model from the app's functions; raise on anything unsupported."""
    functions: dict[str, FunctionSpec] = {}
    for function in built_functions(app):
        name = function.get_function_name()
        bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
        trigger = _check_bindings(name, bindings)
        for binding in bindings:
            for key in _EXPRESSION_KEYS:
                if isinstance(binding.get(key), str):
                    try:
                        binding[key] = settings.resolve(binding[key], where=f"function '{name}', binding '{binding.get('name')}'")
                    except SettingsError as error:
                        raise IndexingError(str(error)) from error
        user = function.get_user_function()
        _check_durable_shape(name, trigger, user)
        try:
            parameters = tuple(inspect.signature(user).parameters)
        except (TypeError, ValueError):
            parameters = ()
        spec = FunctionSpec(
            name=name,
            trigger=trigger,
            bindings=bindings,
            user_function=user,
            parameters=parameters,
            is_async=inspect.iscoroutinefunction(user),
            outputs=[b for b in bindings if str(b.get("direction", "")).upper() == "OUT"],
        )
        functions[name] = spec
    index = AppIndex(functions=functions, app_dir=app_dir)
    for spec in functions.values():
        kind = spec.trigger_type
        if kind == "orchestrationTrigger":
            spec.durable_name = spec.trigger.get("orchestration") or spec.name
            index.orchestrators[spec.durable_name] = spec
        elif kind == "activityTrigger":
            spec.durable_name = spec.trigger.get("activity") or spec.name
            index.activities[spec.durable_name] = spec
        elif kind == "entityTrigger":
            spec.durable_name = spec.trigger.get("entityName") or spec.name
            index.entities[spec.durable_name.lower()] = spec
    return index


def _check_bindings(name: str, bindings: list[dict[str, Any]]) -> dict[str, Any]:
    trigger: dict[str, Any] | None = None
    for binding in bindings:
        type_ = str(binding.get("type"))
        direction = str(binding.get("direction", "")).upper()
        if type_ in TRIGGERS:
            trigger = binding
            if type_ == "serviceBusTrigger" and binding.get("isSessionsEnabled"):
                raise UnsupportedBindingError(
                    f"function '{name}': serviceBusTrigger with isSessionsEnabled is not supported by the embedded engine"
                )
            continue
        if (type_, direction) not in OTHER_BINDINGS:
            supported = ", ".join(sorted(TRIGGERS | {f"{t} ({d.lower()})" for t, d in OTHER_BINDINGS}))
            raise UnsupportedBindingError(
                f"function '{name}': binding '{binding.get('name')}' of type '{type_}' (direction {direction or '?'}) "
                f"is not supported by the embedded engine; supported: {supported}"
            )
    if trigger is None:
        raise UnsupportedBindingError(f"function '{name}' has no trigger the embedded engine supports")
    return trigger


def _check_durable_shape(name: str, trigger: dict[str, Any], user: Callable[..., Any]) -> None:
    """The SDK silently misbehaves on async orchestrators and entities; refuse them up front."""
    kind = trigger.get("type")
    inner = getattr(user, "orchestrator_function", None) if kind == "orchestrationTrigger" else (
        getattr(user, "entity_function", None) if kind == "entityTrigger" else None)
    if inner is not None and (inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)):
        role = "orchestrator" if kind == "orchestrationTrigger" else "entity"
        raise IndexingError(f"function '{name}': {role} functions must not be async (the Durable Python SDK "
                            f"cannot run them); write a {'generator' if role == 'orchestrator' else 'plain'} function")
