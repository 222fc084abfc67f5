"""Tool names offered to a model: every one matches OpenAI's function-name pattern, and decodes back
to the server (with its namespace) and the tool it names."""

from __future__ import annotations

import re

import pytest

from kernel.inference.port import TOOL_NAME_PATTERN, split_tool_name, tool_name

OPENAI = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CASES = [
    ("memory", "read_graph"),
    ("default.everything", "echo"),                 # a cross-namespace grant of the default namespace
    ("acme.github", "search_issues"),
    ("my-server", "get__double__underscored"),      # the tool may hold the separator itself
    ("context", "send_event"),
]


@pytest.mark.parametrize(("server", "tool"), CASES)
def test_names_match_the_openai_pattern_and_round_trip_without_a_table(server: str, tool: str) -> None:
    name = tool_name(server, tool)
    assert OPENAI.match(name) and TOOL_NAME_PATTERN.pattern == OPENAI.pattern
    assert "." not in name
    assert split_tool_name(name) == (server, tool)


def test_the_namespace_dot_is_written_as_one_underscore() -> None:
    assert tool_name("default.everything", "echo") == "default_everything__echo"
    assert tool_name("everything", "echo") == "everything__echo"  # unchanged within a namespace


@pytest.mark.parametrize(("server", "tool"), [
    ("a-very-long-namespace-name-for-tests.an-equally-long-server-id-here", "read_every_single_thing"),
    ("files", "read.file/v2"),   # characters a function name does not allow
    ("x", "t" * 128),
])
def test_names_too_long_or_too_odd_get_a_stable_hash_and_decode_against_what_was_offered(
        server: str, tool: str) -> None:
    name = tool_name(server, tool)
    assert OPENAI.match(name) and len(name) <= 64
    assert re.search(r"_h[0-9a-f]{10}$", name)
    assert tool_name(server, tool) == name  # stable: the same pair, the same name, in every process
    assert name.startswith(re.sub(r"[^a-zA-Z0-9_-]", "-", server.replace(".", "_"))[:20])  # still readable
    offered = [("files", "read_file"), (server, tool)]
    assert split_tool_name(name, offered) == (server, tool)
    assert tool_name(server, tool + "x") != name  # a different tool, a different hash


def test_similar_long_names_do_not_collide() -> None:
    base = "acme.server-with-a-long-identifier-that-fills-it"
    names = {tool_name(base, f"tool_number_{n}_with_a_long_suffix") for n in range(50)}
    assert len(names) == 50


def test_a_name_that_is_neither_offered_nor_server_tool_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="tool name 'read_graph' is not '<server>__<tool>' and names no tool offered"):
        split_tool_name("read_graph", [("memory", "read_graph")])
    with pytest.raises(ValueError, match="'__echo'"):
        split_tool_name("__echo")
