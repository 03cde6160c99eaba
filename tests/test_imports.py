"""The import graph: no cycles among mailgate's modules, and the layers point one way.

Counted with the imports under TYPE_CHECKING too: a cycle there is the same tangle of
responsibilities, only postponed (the review that asked for this test found a 10-module
circle console/* <-> service.py held together by such imports).
"""

from __future__ import annotations

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("mailgate", exclude_type_checking_imports=False, cache_dir=None)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_cycles_finds_every_circle(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert cycles(edges) == []


def test_the_console_does_not_reach_the_service(graph: grimp.ImportGraph) -> None:
    # The console works on a GatewayHandle (mailgate.operations); serve hands it the gateway.
    assert not graph.chain_exists("mailgate.console", "mailgate.service", as_packages=True)


def test_the_database_layer_knows_no_product_module(graph: grimp.ImportGraph) -> None:
    for module in ("mailgate.db.schema", "mailgate.db.writer"):
        imported = graph.find_modules_directly_imported_by(module)
        assert {m for m in imported if m.startswith("mailgate.")} == set(), module
