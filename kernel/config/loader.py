"""Config files in, validated models plus a list of problems out.

One broken file never stops the others: each file is parsed and validated on its own, then the
documents that passed are checked against each other (duplicate ids, dangling references). A
document with an error is left out of the result and reported; everything else loads.
Secret references are checked for shape only; nothing is resolved here.

Documents are keyed by their *address* (``kernel.namespaces``): the id in the default namespace,
``<namespace>.<id>`` in another, so ids are unique per kind and namespace.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import ValidationError

from kernel.config.documents import Documents, built, stored_form
from kernel.config.errors import describe, translate
from kernel.config.models import (
    DOCUMENT_MODELS,
    OFFLINE_ENDPOINT,
    SETTINGS_ENDPOINT,
    AdapterConfig,
    AgentConfig,
    AgentRouting,
    Document,
    InferenceEndpointConfig,
    SHARED_KINDS,
    McpServerConfig,
    NamespaceConfig,
    PolicyConfig,
    document_id,
)
from kernel import namespaces as ns
from kernel.config.parsing import JsonPath, ParseError, Parsed, format_path, parse
from kernel.config.problems import Problem
from kernel.config.references import MalformedReference, find_references
from kernel.config.subscribers import Subscribers
from kernel.workflows.models import WorkflowConfig
from kernel.workflows.validation import workflow_problems

CONFIG_SUFFIXES = {".json", ".yaml", ".yml"}

#: A document without ``kind`` takes the kind of the folder it is in.
FOLDER_KINDS = {"agent_configs": "agent", "mcp_configs": "mcp_server", "workflow_configs": "workflow"}

#: Where `${secret:…}` / `${env:…}` references are resolved at use; anywhere else they would
#: reach a model or a log verbatim, so they are refused.
REFERENCE_FIELDS: dict[str, set[str]] = {
    "mcp_server": {"env", "headers", "url", "args", "command", "cwd"},
    "inference_endpoint": {"url", "auth"},
}


@dataclass(frozen=True, slots=True)
class Source:
    """Where a document came from and which version of it is loaded."""

    file: str
    version: str

    @property
    def line(self) -> int:
        """The line of the document's ``id`` (an adapter's ``name``), read from the file when asked:
        only messages name it, so positions are not worked out (or kept) for every file."""
        return _id_line(self.file)


@dataclass
class ConfigSet:
    """The documents that passed validation, and the problems of those that did not.

    Documents are held compactly and built when read (``kernel.config.documents``)."""

    agents: Documents[AgentConfig] = field(default_factory=lambda: Documents(AgentConfig))
    adapters: Documents[AdapterConfig] = field(default_factory=lambda: Documents(AdapterConfig))
    mcp_servers: Documents[McpServerConfig] = field(default_factory=lambda: Documents(McpServerConfig))
    endpoints: Documents[InferenceEndpointConfig] = field(default_factory=lambda: Documents(InferenceEndpointConfig))
    policies: Documents[PolicyConfig] = field(default_factory=lambda: Documents(PolicyConfig))
    namespaces: Documents[NamespaceConfig] = field(default_factory=lambda: Documents(NamespaceConfig))
    workflows: Documents[WorkflowConfig] = field(default_factory=lambda: Documents(WorkflowConfig))
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    _subscribers: Subscribers | None = field(default=None, repr=False, compare=False)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_kind(self, kind: str) -> Documents[Any]:
        return {"agent": self.agents, "adapter": self.adapters, "mcp_server": self.mcp_servers,
                "inference_endpoint": self.endpoints, "policy": self.policies, "namespace": self.namespaces,
                "workflow": self.workflows}[kind]

    def source(self, kind: str, doc_id: str) -> Source:
        return self.sources[(kind, doc_id)]

    def subscribers(self) -> Subscribers:
        """The agents' subscriptions indexed for routing, built on first use (a config set is not
        changed once the store hands it out)."""
        if self._subscribers is None:
            self._subscribers = Subscribers(self.agents.each_as(AgentRouting))
        return self._subscribers


@dataclass
class _Loaded:
    """One file that validated, held as its document's stored form while the whole set loads (the
    documents are checked against each other after the last file), so the load's peak memory is
    one file's, not every file's parsed data and models at once."""

    kind: str
    file: str
    address: str
    namespace: str
    version: str
    stored: Any
    lent: bool = False  # taken from the previous load, unchanged (``Unchanged``)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.address

    @property
    def document(self) -> Any:
        return built(DOCUMENT_MODELS[self.kind], self.stored)

    @functools.cached_property
    def parsed(self) -> Parsed:
        """The file parsed again, for the positions of a problem found between documents."""
        return _parsed_again(self.file)


def _parsed_again(file: str) -> Parsed:
    """``file`` as it is now, for positions only (no data and no positions if it cannot be read)."""
    try:
        return parse(Path(file).read_text(encoding="utf-8"), suffix=Path(file).suffix)
    except (OSError, UnicodeDecodeError, ParseError):
        return Parsed({})


def _kept(item: _Loaded, result: ConfigSet) -> bool:
    """Whether ``item`` is the document ``result`` holds under its address (not a duplicate, not
    dropped for an error)."""
    source = result.sources.get(item.key)
    return source is not None and source.file == item.file


@dataclass(frozen=True)
class Unchanged:
    """What the previous load can lend the next: the documents of files that loaded cleanly then
    and have not changed since (``files``: each such file's stamp, see :func:`file_stamp`; ``now``:
    the stamps of the files as they are now). A file in neither, or whose stamps differ, is read
    and validated again; the checks between documents always run over all of them."""

    previous: ConfigSet
    files: Mapping[str, int]
    now: Mapping[str, int]

    def lender(self) -> dict[str, tuple[str, str]]:
        """``file -> (kind, address)`` of the previous set's documents (built once per load)."""
        return {source.file: key for key, source in self.previous.sources.items() if source.file in self.files}


def file_stamp(stat: os.stat_result) -> int:
    """A file's modification time and size as one signed 64-bit number, never 0 (0 means "no
    stamp"): a change to either changes it, but for a 64-bit hash collision."""
    return hash((stat.st_mtime_ns, stat.st_size)) or 1


def load_configs(paths: Iterable[str | Path], *, unchanged: Unchanged | None = None) -> ConfigSet:
    """Load every config file under ``paths`` (files or folders); with ``unchanged``, a file whose
    stamp is the one it cleanly loaded with last time is taken from the previous set, not read."""
    result = ConfigSet()
    loaded: list[_Loaded] = []
    lender = unchanged.lender() if unchanged is not None else {}
    for file in discover_files(paths, result.problems):
        result.files.append(file)
        document = _lent(file, lender, unchanged) if lender else None
        if document is None:
            document = load_file(file, result.problems)
        if document is not None:
            loaded.append(document)
    lender.clear()
    _collect(loaded, result)
    _check_namespaces(loaded, result)
    same_world = unchanged is not None and _same_references(unchanged.previous, result)
    _check_references_between(loaded, result, trust_lent=same_world)
    _check_policies(loaded, result)
    _check_workflows(loaded, result)
    return result


def _lent(file: str, lender: dict[str, tuple[str, str]], unchanged: Unchanged) -> _Loaded | None:
    """``file``'s document from the previous set when the file is as it was then, else None."""
    key = lender.get(file)
    stamp = unchanged.now.get(file)
    if key is None or stamp is None or unchanged.files.get(file) != stamp:
        return None
    kind, address = key
    namespace = ns.DEFAULT if kind in SHARED_KINDS or kind == "namespace" else ns.namespace_of(address)
    return _Loaded(kind, file, address, namespace, unchanged.previous.sources[key].version,
                   unchanged.previous.by_kind(kind).stored(address), lent=True)


def discover_files(paths: Iterable[str | Path], problems: list[Problem]) -> list[str]:
    """Config files named by ``paths`` (files as given, folders searched recursively), as path
    strings: ten thousand files in tens of milliseconds (``os.scandir``, no ``Path`` per file,
    whose parts Python would intern for the life of the process)."""
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(_files_under(str(path)))
        elif path.is_file():
            if path.suffix in CONFIG_SUFFIXES:
                found.append(str(path))
            else:
                problems.append(
                    Problem(
                        file=str(path),
                        message="not a config file",
                        expected="a .json, .yaml or .yml file",
                        found=f"'{path.suffix or 'no extension'}'",
                        code="unsupported-file",
                    )
                )
        else:
            problems.append(Problem(file=str(path), message="no such file or folder", code="missing-file"))
    return found


def _files_under(folder: str) -> list[str]:
    """Config files anywhere under ``folder``, hidden files and folders left out, in path order
    (the order decides which of two duplicate documents is kept)."""
    found: list[str] = []
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    pending.append(entry.path)
                elif os.path.splitext(entry.name)[1] in CONFIG_SUFFIXES and entry.is_file():
                    found.append(entry.path)
    found.sort(key=lambda file: file.split(os.sep))
    return found


def load_file(file: str, problems: list[Problem]) -> _Loaded | None:
    """Parse and validate one file; on failure append problems and return None."""
    suffix = os.path.splitext(file)[1]
    try:
        with open(file, encoding="utf-8") as opened:
            text = opened.read()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(file=file, message=f"cannot read file: {error}", code="unreadable"))
        return None
    if not text.strip():
        problems.append(
            Problem(file=file, line=1, message="file is empty", expected="an object", found="nothing", code="empty")
        )
        return None
    try:
        parsed = parse(text, suffix=suffix)
    except ParseError as error:
        problems.append(
            Problem(file=file, line=error.line, column=error.column, message=error.message, code="syntax")
        )
        return None
    if not isinstance(parsed.data, dict):
        problems.append(
            Problem(
                file=file,
                line=1,
                column=1,
                message="a config file holds one object at the top level",
                expected="an object (mapping) with 'id' and the other fields",
                found=describe(parsed.data),
                code="not-an-object",
            )
        )
        return None
    kind = _kind_of(parsed, file, problems)
    if kind is None:
        return None
    reference_problems = _check_reference_syntax(parsed, kind, file)
    model = DOCUMENT_MODELS[kind]
    try:
        document = model.model_validate(parsed.data)
    except ValidationError as error:
        found = translate(error, model=model, parsed=parsed, file=file) + reference_problems
        problems.extend(sorted(found, key=lambda p: (p.line or 0, p.column or 0)))
        return None
    if reference_problems:
        problems.extend(reference_problems)
        return None
    return _Loaded(kind, file, ns.address_of(document), getattr(document, "namespace", ns.DEFAULT),
                   config_version(document), stored_form(document, parsed.data))


def _kind_of(parsed: Parsed, file: str, problems: list[Problem]) -> str | None:
    declared = parsed.data.get("kind")
    if declared is None:
        for folder in reversed(file.split(os.sep)[:-1]):
            if folder in FOLDER_KINDS:
                return FOLDER_KINDS[folder]
        problems.append(
            Problem(
                file=file,
                line=1,
                message="cannot tell what this document is: add 'kind'",
                expected=f"'kind' set to one of {', '.join(DOCUMENT_MODELS)}",
                found="no 'kind' outside agent_configs/, mcp_configs/ and workflow_configs/",
                code="missing-kind",
            )
        )
        return None
    if declared not in DOCUMENT_MODELS:
        position = parsed.position(("kind",))
        hint = difflib.get_close_matches(str(declared), list(DOCUMENT_MODELS), n=1)
        problems.append(
            Problem(
                file=file,
                path="$.kind",
                line=position.line if position else None,
                column=position.column if position else None,
                message="unknown kind" + (f" (did you mean '{hint[0]}'?)" if hint else ""),
                expected=f"one of {', '.join(DOCUMENT_MODELS)}",
                found=describe(declared),
                code="unknown-kind",
            )
        )
        return None
    return str(declared)


def _check_reference_syntax(parsed: Parsed, kind: str, file: str) -> list[Problem]:
    """Malformed references anywhere, and well-formed ones where nothing resolves them."""
    problems: list[Problem] = []
    allowed = REFERENCE_FIELDS.get(kind, set())
    for path, text in _strings(parsed.data, ()):
        try:
            references = find_references(text)
        except MalformedReference as error:
            problems.append(_at(parsed, file, path, str(error), code="bad-reference"))
            continue
        if references and not (path and path[0] in allowed):
            if allowed:
                where = f"in {kind.replace('_', ' ')} documents only in: {', '.join(sorted(allowed))}"
            else:
                where = f"nowhere in {kind.replace('_', ' ')} documents"
            problems.append(
                _at(
                    parsed,
                    file,
                    path,
                    f"{references[0]} would be used verbatim: references are resolved {where}",
                    code="reference-not-resolved-here",
                )
            )
    return problems


def _strings(value: Any, path: JsonPath) -> Iterable[tuple[JsonPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, path + (str(key),))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, path + (index,))


def _at(parsed: Parsed, file: str, path: JsonPath, message: str, **extra: Any) -> Problem:
    position = parsed.position(path)
    return Problem(
        file=file,
        path=format_path(path),
        line=position.line if position else None,
        column=position.column if position else None,
        message=message,
        **extra,
    )


def config_version(document: Document) -> str:
    """A short content hash: the version an agent records when it adopts a config."""
    # the default namespace is left out, so documents from before namespaces keep their versions
    excluded = {"schema_"} | ({"namespace"} if getattr(document, "namespace", None) == ns.DEFAULT else set())
    canonical = json.dumps(
        document.model_dump(mode="json", exclude=excluded), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _collect(loaded: list[_Loaded], result: ConfigSet) -> None:
    """Add documents kind by kind under their addresses, refusing duplicate ids within a namespace
    (the first file wins)."""
    for item in loaded:
        doc_id = item.address
        key = item.key
        if key in result.sources:
            first = result.sources[key]
            id_field = "name" if item.kind == "adapter" else "id"
            namespace = getattr(item.document, "namespace", ns.DEFAULT)
            where = f" in namespace '{namespace}'" if namespace != ns.DEFAULT else ""
            result.problems.append(
                _at(
                    item.parsed,
                    item.file,
                    (id_field,),
                    f"duplicate {item.kind.replace('_', ' ')} {id_field} '{document_id(item.document)}'{where}: "
                    f"already defined in {first.file}:{first.line}",
                    code="duplicate-id",
                )
            )
            continue
        result.sources[key] = Source(item.file, item.version)
        result.by_kind(item.kind).put_stored(doc_id, item.stored)


def _id_line(file: str) -> int:
    """The line of the ``id`` (else ``name``) in ``file`` as it is now; 1 if that cannot be told."""
    parsed = _parsed_again(file)
    position = parsed.position(("id",)) or parsed.position(("name",))
    return position.line if position else 1


def _check_namespaces(loaded: list[_Loaded], result: ConfigSet) -> None:
    """Each document's namespace must be declared (``default`` always is), adapters and endpoints
    are shared by all namespaces (so they stay in ``default``), and routes must lead somewhere."""
    for item in loaded:
        address, namespace = item.address, item.namespace
        if not _kept(item, result):
            continue  # a duplicate, already reported
        problem: Problem | None = None
        if item.kind in SHARED_KINDS and namespace != ns.DEFAULT:
            problem = _at(item.parsed, item.file, ("namespace",),
                          f"{item.kind.replace('_', ' ')} documents are shared by every namespace: they stay in "
                          f"'{ns.DEFAULT}' (leave 'namespace' out)", found=f"'{namespace}'",
                          code="namespace-not-allowed")
        elif namespace != ns.DEFAULT and namespace not in result.namespaces:
            hint = difflib.get_close_matches(namespace, sorted(result.namespaces), n=1, cutoff=0.6)
            problem = _at(item.parsed, item.file, ("namespace",),
                          f"unknown namespace '{namespace}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + ": declare it with a 'kind: namespace' document",
                          expected=f"'{ns.DEFAULT}' or one of: {', '.join(sorted(result.namespaces)) or 'none declared'}",
                          found=f"'{namespace}'", code="unknown-namespace")
        if problem is not None:
            result.problems.append(problem)
            del result.by_kind(item.kind)[address]
            del result.sources[(item.kind, address)]
            continue
        if item.kind == "namespace":
            for index, route in enumerate(item.document.routes):
                if route.to != ns.DEFAULT and route.to not in result.namespaces:
                    result.problems.append(_at(
                        item.parsed, item.file, ("routes", index, "to"),
                        f"route to unknown namespace '{route.to}': it allows nothing until that namespace is declared",
                        severity="warning", code="dangling-reference"))
    for namespace, quota in sorted((n.id, n.quotas.agents) for n in result.namespaces.values()):
        declared = sorted(a for a in result.agents if ns.namespace_of(a) == namespace)
        if quota is not None and len(declared) > quota:
            item = next(i for i in loaded if i.kind == "namespace" and i.document.id == namespace)
            result.problems.append(_at(
                item.parsed, item.file, ("quotas", "agents"),
                f"namespace '{namespace}' declares {len(declared)} agents but its quota is {quota}: the config sync "
                "registers agents in the order they first appear and refuses the rest",
                severity="warning", code="quota-agents"))


#: The kinds an agent's references name (``_agent_reference_problems`` reads nothing else).
_REFERENCED_KINDS = ("adapter", "inference_endpoint", "mcp_server", "namespace")


def _same_references(previous: ConfigSet, result: ConfigSet) -> bool:
    """Whether every document an agent may reference is the same, at the same version, as in
    ``previous``: then an unchanged agent that had no problem there has none here either."""
    def referenced(configs: ConfigSet) -> dict[tuple[str, str], str]:
        return {key: source.version for key, source in configs.sources.items() if key[0] in _REFERENCED_KINDS}

    return referenced(previous) == referenced(result)


def _check_references_between(loaded: list[_Loaded], result: ConfigSet, *, trust_lent: bool = False) -> None:
    """Agents may only name adapters, endpoints, servers and tools that exist (in their namespace, or
    in another one a route grants); drop those that don't. With ``trust_lent`` (nothing they can
    reference changed), an agent lent unchanged by the previous load, where it had no problem, is
    not checked again: rebuilding ten thousand documents is most of a reload's time."""
    for item in loaded:
        if item.kind != "agent" or not _kept(item, result) or (trust_lent and item.lent):
            continue  # another kind, a duplicate or in an unknown namespace (already reported); or trusted
        agent, address = item.document, item.address
        problems = list(_agent_reference_problems(agent, item, result))
        result.problems.extend(problems)
        if any(p.severity == "error" for p in problems):
            del result.agents[address]
            del result.sources[("agent", address)]


def _serving_problems(agent: AgentConfig, endpoint: InferenceEndpointConfig, adapter: AdapterConfig,
                      item: _Loaded) -> Iterable[Problem]:
    """Warnings (never errors: the endpoint may change first) when an enabled endpoint will not serve
    the agent's adapter as it stands."""
    serving = endpoint.adapters
    if adapter.name not in serving.served and not serving.discover and not serving.on_demand:
        outcome = f"its calls use base model '{endpoint.base_model}'" if serving.fallback else "its calls fail"
        yield _at(item.parsed, item.file, ("model", "adapter", "name"),
                  f"adapter '{adapter.name}' is not among the adapters inference endpoint '{endpoint.id}' serves: "
                  f"{outcome} (add it to adapters.served, or set adapters.discover or adapters.on_demand)",
                  severity="warning", code="adapter-not-served")
    if endpoint.type in ("vllm", "lorax") and adapter.base_model != endpoint.base_model:
        yield _at(item.parsed, item.file, ("model", "adapter", "name"),
                  f"adapter '{adapter.name}' extends '{adapter.base_model}', but inference endpoint '{endpoint.id}' "
                  f"serves base model '{endpoint.base_model}': a LoRA only loads on the model it was trained on",
                  severity="warning", code="adapter-base-model")


def _agent_reference_problems(agent: AgentConfig, item: _Loaded, result: ConfigSet) -> Iterable[Problem]:
    def dangling(path: JsonPath, what: str, name: str, known: Iterable[str]) -> Problem:
        names = sorted(known)
        hint = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        return _at(
            item.parsed,
            item.file,
            path,
            f"unknown {what} '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""),
            expected=f"one of: {', '.join(names)}" if names else f"a declared {what}",
            found=f"'{name}'",
            code="dangling-reference",
        )

    endpoint = result.endpoints.get(agent.model.endpoint) if agent.model.endpoint is not None else None
    if agent.model.endpoint is not None and endpoint is None:
        yield dangling(("model", "endpoint"), "inference endpoint", agent.model.endpoint, result.endpoints)
    if agent.model.adapter is not None and agent.model.adapter.name not in result.adapters:
        yield dangling(("model", "adapter", "name"), "adapter", agent.model.adapter.name, result.adapters)
    elif agent.model.adapter is not None and endpoint is not None and endpoint.enabled:
        yield from _serving_problems(agent, endpoint, result.adapters[agent.model.adapter.name], item)

    granted: dict[str, set[str] | None] = {}
    for index, grant in enumerate(agent.tools):
        target = ns.resolve(agent.namespace, grant.server)
        server = result.mcp_servers.get(target)
        if server is None:
            in_namespace = [ns.split(a)[1] if ns.namespace_of(a) == agent.namespace else a
                            for a in result.mcp_servers
                            if ns.namespace_of(a) in (agent.namespace, ns.namespace_of(target))]
            yield dangling(("tools", index, "server"), "MCP server", grant.server, in_namespace)
            continue
        crossing = ns.namespace_of(target)
        if crossing != agent.namespace:
            names = [server.id] if grant.tools is None else [f"{server.id}.{tool}" for tool in grant.tools]
            for name in names:
                if not ns.routed(result.namespaces, agent.namespace, crossing, "tools", name):
                    yield _at(item.parsed, item.file, ("tools", index, "server"),
                              "cross-namespace reference: " + ns.route_refusal(agent.namespace, crossing, "tools", name),
                              found=f"'{grant.server}'", code="cross-namespace")
                    break
        granted[grant.server] = set(grant.tools) if grant.tools is not None else None
        if not server.enabled:
            yield _at(
                item.parsed,
                item.file,
                ("tools", index, "server"),
                f"MCP server '{grant.server}' is disabled: its tools are unavailable until it is enabled",
                severity="warning",
                code="disabled-server",
            )
        for tool_index, tool in enumerate(grant.tools or []):
            path = ("tools", index, "tools", tool_index)
            if tool in server.tools.exclude:
                yield _at(
                    item.parsed,
                    item.file,
                    path,
                    f"tool '{tool}' is excluded by MCP server '{grant.server}'",
                    code="excluded-tool",
                )
            elif server.tools.include is not None and tool not in server.tools.include:
                yield dangling(path, f"tool of MCP server '{grant.server}'", tool, server.tools.include)
        if isinstance(grant.requires_approval, list):
            for tool_index, tool in enumerate(grant.requires_approval):
                if grant.tools is not None and tool not in grant.tools:
                    yield dangling(("tools", index, "requires_approval", tool_index), "granted tool", tool,
                                   grant.tools)

    for index, rule in enumerate(agent.approvals):
        if rule.server not in granted:
            yield _at(
                item.parsed,
                item.file,
                ("approvals", index, "server"),
                f"approval rule for MCP server '{rule.server}', which this agent is not granted",
                expected=f"one of the granted servers: {', '.join(sorted(granted)) or 'none'}",
                code="dangling-reference",
            )
            continue
        allowed = granted[rule.server]
        excluded = result.mcp_servers[ns.resolve(agent.namespace, rule.server)].tools.exclude
        for tool_index, tool in enumerate(rule.tools or []):
            path = ("approvals", index, "tools", tool_index)
            if tool in excluded:
                yield _at(
                    item.parsed,
                    item.file,
                    path,
                    f"tool '{tool}' is excluded by MCP server '{rule.server}'",
                    code="excluded-tool",
                )
            elif allowed is not None and tool not in allowed:
                yield dangling(path, "granted tool", tool, allowed)


def _check_policies(loaded: list[_Loaded], result: ConfigSet) -> None:
    """Warnings only: a policy is governance over agents, not part of them, so nothing it says
    may un-declare an agent (an error would drop the agent's document). What a policy forbids is
    refused at the point of use, audited; ``aos validate`` says so in advance."""
    agents = {item.address: item for item in loaded if item.kind == "agent" and _kept(item, result)}
    for item in loaded:
        if item.kind != "policy" or not _kept(item, result):
            continue  # not a policy, or a duplicate (already reported)
        policy = item.document
        result.problems.extend(_policy_problems(policy, item, result))
        if not policy.enabled:
            continue
        for agent_id in sorted(agent_id for agent_id in agents if policy.selects(agent_id)):
            result.problems.extend(_forbidden_model(policy, item, agents[agent_id], result))


def _policy_problems(policy: PolicyConfig, item: _Loaded, result: ConfigSet) -> Iterable[Problem]:
    if policy.enabled and not any(policy.selects(agent_id) for agent_id in result.agents):
        own = sorted(ns.split(a)[1] for a in result.agents if ns.namespace_of(a) == policy.namespace)
        yield _at(item.parsed, item.file, ("applies_to",),
                  f"policy '{policy.id}' applies to no declared agent"
                  + (f" of namespace '{policy.namespace}'" if policy.namespace != ns.DEFAULT else "")
                  + f" ({', '.join(policy.applies_to)})",
                  expected=f"ids or patterns of: {', '.join(own) or 'no agents are declared'}",
                  severity="warning", code="policy-selects-nothing")
    models = policy.models
    if models is None:
        return
    known_endpoints = set(result.endpoints) | {OFFLINE_ENDPOINT, SETTINGS_ENDPOINT}
    for index, endpoint in enumerate(models.endpoints or []):
        if endpoint not in known_endpoints:
            hint = difflib.get_close_matches(endpoint, sorted(known_endpoints), n=1, cutoff=0.6)
            yield _at(item.parsed, item.file, ("models", "endpoints", index),
                      f"unknown inference endpoint '{endpoint}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                      + ": it allows nothing until such an endpoint is declared",
                      expected=f"one of: {', '.join(sorted(known_endpoints))}", found=f"'{endpoint}'",
                      severity="warning", code="dangling-reference")
    for index, entry in enumerate(models.adapters or []):
        name = entry.partition("@")[0]
        if name not in result.adapters:
            hint = difflib.get_close_matches(name, sorted(result.adapters), n=1, cutoff=0.6)
            yield _at(item.parsed, item.file, ("models", "adapters", index),
                      f"unknown adapter '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                      + ": it allows nothing until such an adapter is declared",
                      expected=f"one of: {', '.join(sorted(result.adapters)) or 'no adapters are declared'}",
                      found=f"'{entry}'", severity="warning", code="dangling-reference")


def _forbidden_model(policy: PolicyConfig, policy_item: _Loaded, agent_item: _Loaded,
                     result: ConfigSet) -> Iterable[Problem]:
    """The agent's declared endpoint or adapter, where the policy's allow-lists refuse it."""
    agent = agent_item.document
    models = policy.models
    if models is None or not isinstance(agent, AgentConfig):
        return
    where = f"policy '{policy.id}' ({policy_item.file})"
    endpoint_id = agent.model.endpoint
    if models.endpoints is not None and endpoint_id is not None:
        endpoint = result.endpoints.get(endpoint_id)
        disabled = endpoint is not None and not endpoint.enabled
        if endpoint_id not in models.endpoints:
            now = " (it is disabled now: its calls go to the offline provider until it is enabled)" if disabled else ""
            yield _at(agent_item.parsed, agent_item.file, ("model", "endpoint"),
                      f"{where} does not allow inference endpoint '{endpoint_id}': this agent's model calls will "
                      f"be refused{now}", expected=f"one of: {', '.join(models.endpoints) or 'none'}",
                      severity="warning", code="policy-forbids-endpoint")
        elif disabled and OFFLINE_ENDPOINT not in models.endpoints:
            yield _at(agent_item.parsed, agent_item.file, ("model", "endpoint"),
                      f"inference endpoint '{endpoint_id}' is disabled, so this agent's calls go to the offline "
                      f"provider, which {where} does not allow ('{OFFLINE_ENDPOINT}' is not listed): they will be "
                      "refused", severity="warning", code="policy-forbids-endpoint")
    adapter = agent.model.adapter
    if models.adapters is not None and adapter is not None:
        allowed = {adapter.name, f"{adapter.name}@{adapter.version}"}
        if not allowed & set(models.adapters):
            yield _at(agent_item.parsed, agent_item.file, ("model", "adapter", "name"),
                      f"{where} does not allow adapter '{adapter.name}' (version {adapter.version}): this agent's "
                      "model calls will be refused", expected=f"one of: {', '.join(models.adapters) or 'none'}",
                      severity="warning", code="policy-forbids-adapter")


def _check_workflows(loaded: list[_Loaded], result: ConfigSet) -> None:
    """Workflows may only address agents, tools and steps that exist (kernel.workflows.validation);
    a workflow with an error is dropped, like an agent with a dangling reference."""
    for item in loaded:
        if item.kind != "workflow" or not _kept(item, result):
            continue  # another kind, a duplicate or in an unknown namespace (already reported)
        address = item.address
        problems = workflow_problems(item.document, item.parsed, item.file, result)
        result.problems.extend(problems)
        if any(p.severity == "error" for p in problems):
            del result.workflows[address]
            del result.sources[("workflow", address)]
