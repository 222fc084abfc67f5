"""The step DAG: cycles, upstream sets and a deterministic order.

Steps are given as ``{id: [needs...]}`` in declaration order; unknown needs are ignored here
(validation reports them). Everything is deterministic: ties keep declaration order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle as ``[a, b, c, a]`` (``a`` needs ``b`` … needs ``a``), or ``None``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for need in needs.get(node, ()):
            if need not in needs:
                continue
            if state.get(need) == 1:
                return path[path.index(need):] + [need]
            if need not in state:
                found = visit(need)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in needs:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def upstream(needs: Mapping[str, Sequence[str]], node: str) -> set[str]:
    """Every step ``node`` waits for, directly or not."""
    seen: set[str] = set()
    stack = [need for need in needs.get(node, ()) if need in needs]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(need for need in needs.get(current, ()) if need in needs)
    return seen


def order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Steps so that each comes after what it needs (declaration order among equals); the DAG must be acyclic."""
    placed: list[str] = []
    done: set[str] = set()
    remaining = list(needs)
    while remaining:
        ready = [node for node in remaining if all(need in done or need not in needs for need in needs[node])]
        if not ready:
            raise ValueError(f"the steps form a cycle: {' -> '.join(find_cycle(needs) or remaining)}")
        for node in ready:
            placed.append(node)
            done.add(node)
        remaining = [node for node in remaining if node not in done]
    return placed


def depths(needs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each step's level: 0 without needs, else one more than its deepest need (for the CLI's view)."""
    level: dict[str, int] = {}
    for node in order(needs):
        level[node] = 1 + max((level[need] for need in needs[node] if need in level), default=-1)
    return level
