"""Architecture rules, checked by reading the package's imports with `ast` (nothing imported).

1. No import cycle between guardstream modules.
2. The pure-logic packages (ingest, guardrails, metering, config, lag.status, the dispatch
   rules) must not reach Faust or a Kafka client, nor the Faust-facing packages (agents,
   runtime, cli) - directly or through any chain of guardstream modules: pure code must not
   pull Faust in through a helper.

How imports are counted (the same rules for both checks):

* Module-level imports count, including those under top-level `if`/`try` and in class bodies.
* Imports inside functions (and lambdas) count too. They run as soon as the function is
  called, so a cycle through one is still a design cycle (it merely hides from import-time
  errors), and a pure function that imports Faust when called still pulls Faust in. Edges
  found inside a function are marked "(in function)" in the messages, so the owner can see
  which import to move.
* Imports under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`) are excluded: they never run,
  and annotation-only references are the sanctioned way to break a type-level cycle. Their
  `else:` branch does run and counts.
* `from guardstream.x import y` is an edge to `guardstream.x.y` when that is a module (or
  package), otherwise to `guardstream.x`. Relative imports are resolved the same way.
* Importing `a.b.c` also executes the packages `a.b` and `a` (their `__init__`). That matters
  for what a module pulls in, so the forbidden-import check follows those implicit edges. The
  cycle check does not: a submodule importing its own parent package is how packages work,
  and would otherwise make every `__init__` that re-exports its submodules a "cycle".
* Dynamic imports (`importlib.import_module`, `__import__`) are not seen.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import guardstream

PACKAGE_DIR = Path(guardstream.__file__).resolve().parent

PURE_PACKAGES = (
    "guardstream.auth",
    "guardstream.ingest",
    "guardstream.guardrails",
    "guardstream.metering",
    "guardstream.config",
    # The lag package reads from Kafka; its status rules do not and must stay that way.
    "guardstream.lag.status",
    # The dispatch stage's retry and usage rules. Its router uses runtime.breaker (the one
    # circuit breaker), so it is not listed; neither is the HTTP client.
    "guardstream.dispatch.attempt",
    "guardstream.dispatch.retry",
    "guardstream.dispatch.usage",
)
FORBIDDEN_EXTERNAL = ("faust", "mode", "aiokafka", "confluent_kafka")
FORBIDDEN_INTERNAL = ("guardstream.agents", "guardstream.runtime", "guardstream.cli")


@dataclass(frozen=True)
class Edge:
    target: str  # a dotted module name (internal) or a top-level distribution name (external)
    line: int
    in_function: bool

    def describe(self) -> str:
        return f":{self.line}{' (in function)' if self.in_function else ''}"


@dataclass
class ImportGraph:
    root: str
    modules: dict[str, Path] = field(default_factory=dict)
    internal: dict[str, list[Edge]] = field(default_factory=dict)
    external: dict[str, list[Edge]] = field(default_factory=dict)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _module_name(root_dir: Path, root: str, path: Path) -> str:
    parts = list(path.relative_to(root_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([root, *parts])


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import that can run, with whether it sits inside a function."""

    def walk(node: ast.AST, in_function: bool) -> Iterable[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:  # only the else branch ever runs
                    yield from walk_one(stmt, in_function)
                continue
            yield from walk_one(child, in_function)

    def walk_one(node: ast.AST, in_function: bool) -> Iterable[tuple[ast.AST, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
            return
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from walk(node, inner)

    for node, in_function in walk(tree, False):
        assert isinstance(node, ast.Import | ast.ImportFrom)
        yield node, in_function


def build_graph(root_dir: Path, root: str = "guardstream") -> ImportGraph:
    """The import graph of the package at `root_dir` (named `root`), read with `ast`."""
    graph = ImportGraph(root)
    for path in sorted(root_dir.rglob("*.py")):
        graph.modules[_module_name(root_dir, root, path)] = path
    for name, path in graph.modules.items():
        is_package = path.name == "__init__.py"
        internal: list[Edge] = []
        external: list[Edge] = []
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, in_function in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if _within(source, root):
                    for alias in node.names:
                        sub = f"{source}.{alias.name}"
                        targets.append(sub if sub in graph.modules else source)
                else:
                    targets = [source]
            for target in targets:
                if _within(target, root):
                    # `import guardstream.x.y.Name` cannot happen, but `from` of a name in a
                    # module that does not exist here (a stale path) must still be reported.
                    internal.append(Edge(target, node.lineno, in_function))
                elif target:
                    external.append(Edge(target.split(".")[0], node.lineno, in_function))
        graph.internal[name] = internal
        graph.external[name] = external
    return graph


# --- cycles ------------------------------------------------------------------------------


def find_cycles(graph: ImportGraph) -> list[list[tuple[str, Edge | None]]]:
    """Shortest cycles covering every module of each strongly connected component.

    Each cycle is a list of (module, edge to the next module); the last entry closes it.
    """
    edges = {m: [e for e in es if e.target in graph.modules] for m, es in graph.internal.items()}
    # Tarjan's strongly connected components (the graph is small: recursion is fine).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for e in edges.get(v, []):
            w = e.target
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    cycles: list[list[tuple[str, Edge | None]]] = []
    seen_cycles: set[frozenset[tuple[str, str]]] = set()
    for comp in sccs:
        members = set(comp)
        if len(comp) == 1 and not any(e.target == comp[0] for e in edges[comp[0]]):
            continue
        # A shortest cycle through each member, so every module in a tangle is named.
        for start in sorted(comp):
            path = _shortest_cycle(edges, members, start)
            key = frozenset((m, e.target) for m, e in path)
            if key not in seen_cycles:
                seen_cycles.add(key)
                cycles.append(list(path))
    return cycles


def _shortest_cycle(
    edges: dict[str, list[Edge]], members: set[str], start: str
) -> list[tuple[str, Edge]]:
    """start -> ... -> start inside one strongly connected component (BFS)."""
    prev: dict[str, tuple[str, Edge]] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        v = queue.popleft()
        for e in sorted(edges[v], key=lambda e: (e.target, e.line)):
            if e.target == start:
                path = [(v, e)]
                while v != start:
                    p, pe = prev[v]
                    path.append((p, pe))
                    v = p
                return path[::-1]
            if e.target in members and e.target not in seen:
                seen.add(e.target)
                prev[e.target] = (v, e)
                queue.append(e.target)
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def format_cycle(cycle: list[tuple[str, Edge | None]]) -> str:
    steps = [f"{m}{e.describe() if e else ''}" for m, e in cycle]
    return " -> ".join([*steps, cycle[0][0]])


# --- forbidden imports -------------------------------------------------------------------


def find_forbidden(
    graph: ImportGraph,
    pure: Iterable[str],
    forbidden_external: Iterable[str],
    forbidden_internal: Iterable[str],
) -> list[str]:
    """For each pure module, the shortest import chain to each forbidden thing it reaches."""
    pure = tuple(pure)
    forbidden_external = set(forbidden_external)
    forbidden_internal = tuple(forbidden_internal)

    def successors(m: str) -> list[tuple[str, Edge | None]]:
        out: list[tuple[str, Edge | None]] = [(e.target, e) for e in graph.internal.get(m, [])]
        # Importing a.b.c executes a.b and a first (edge without a line: implicit).
        parts = m.split(".")
        out += [(".".join(parts[:i]), None) for i in range(len(parts) - 1, 0, -1)]
        return out

    problems = []
    for start in sorted(m for m in graph.modules if any(_within(m, p) for p in pure)):
        prev: dict[str, tuple[str, Edge | None]] = {}
        queue = deque([start])
        seen = {start}
        reported: set[str] = set()
        while queue:
            v = queue.popleft()
            hits: list[tuple[str, str]] = []
            bad_pkg = next((p for p in forbidden_internal if _within(v, p)), None)
            if bad_pkg and v != start:
                hits.append((bad_pkg, ""))
            for e in graph.external.get(v, []):
                if e.target in forbidden_external:
                    hits.append((e.target, f"{v}{e.describe()} -> {e.target}"))
            for what, tail in hits:
                if what in reported:
                    continue
                reported.add(what)
                chain = []
                w = v
                while w != start:
                    p, via = prev[w]
                    chain.append(f"{p}{via.describe() if via else ' (parent package)'}")
                    w = p
                chain.reverse()
                text = " -> ".join([*chain, tail or v])
                problems.append(f"{start} reaches {what}: {text}")
            # Keep walking past a forbidden package: the Faust or Kafka import it leads to is
            # worth naming too.
            for w, step in successors(v):
                if w in graph.modules and w not in seen:
                    seen.add(w)
                    prev[w] = (v, step)
                    queue.append(w)
    return problems


# --- the tests ---------------------------------------------------------------------------


def test_the_graph_sees_the_package() -> None:
    graph = build_graph(PACKAGE_DIR)
    assert "guardstream.ingest.judge" in graph.modules
    assert any(
        e.target == "guardstream.records" for e in graph.internal["guardstream.ingest.judge"]
    )
    # A `from guardstream.x import y` import of a stale path is visible, not silently dropped.
    dangling = sorted(
        f"{m}:{e.line} -> {e.target}"
        for m, es in graph.internal.items()
        for e in es
        if e.target not in graph.modules
    )
    if dangling:
        pytest.fail(
            "imports of missing guardstream modules:\n" + "\n".join(dangling), pytrace=False
        )


def test_no_import_cycles() -> None:
    cycles = find_cycles(build_graph(PACKAGE_DIR))
    if cycles:
        listed = "\n".join(format_cycle(c) for c in cycles)
        pytest.fail(f"import cycles between guardstream modules:\n{listed}", pytrace=False)


def test_pure_packages_do_not_reach_faust_or_kafka() -> None:
    problems = find_forbidden(
        build_graph(PACKAGE_DIR), PURE_PACKAGES, FORBIDDEN_EXTERNAL, FORBIDDEN_INTERNAL
    )
    if problems:
        listed = "\n".join(problems)
        pytest.fail(
            f"pure-logic modules that pull in Faust, Kafka or runtime code:\n{listed}",
            pytrace=False,
        )


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_checker_reports_cycles_and_forbidden_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "toy"
    _write(pkg, "__init__.py", "")
    # A cycle, closed by an import inside a function (still a design cycle).
    _write(pkg, "app.py", "from toy.agents import worker\n")
    _write(pkg, "agents/__init__.py", "")
    _write(pkg, "agents/worker.py", "def run():\n    from toy import app\n")
    # Pure code reaching Faust through a helper, and a runtime package through a relative
    # `from . import` of a submodule.
    _write(pkg, "pure/__init__.py", "")
    _write(pkg, "pure/logic.py", "from toy.helpers import tool\nfrom . import other\n")
    _write(pkg, "pure/other.py", "from ..agents import worker\n")
    _write(pkg, "helpers/__init__.py", "")
    _write(pkg, "helpers/tool.py", "import faust.app\n")
    # Neither of these counts: a TYPE_CHECKING-only import, and a pure module that is clean.
    _write(
        pkg,
        "pure/typed.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import faust\n"
        "    from toy import app\n",
    )

    graph = build_graph(pkg, "toy")
    cycles = [format_cycle(c) for c in find_cycles(graph)]
    assert cycles == ["toy.agents.worker:2 (in function) -> toy.app:1 -> toy.agents.worker"]

    problems = find_forbidden(graph, ["toy.pure"], ["faust"], ["toy.agents"])
    assert problems == [
        "toy.pure.logic reaches faust: toy.pure.logic:1 -> toy.helpers.tool:1 -> faust",
        "toy.pure.logic reaches toy.agents: toy.pure.logic:2 -> toy.pure.other:1 -> "
        "toy.agents.worker",
        "toy.pure.other reaches toy.agents: toy.pure.other:1 -> toy.agents.worker",
    ]


def test_parent_package_init_counts_for_forbidden_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "toy"
    _write(pkg, "__init__.py", "")
    _write(pkg, "pure/__init__.py", "")
    _write(pkg, "pure/logic.py", "from toy.serde import codec\n")
    _write(pkg, "serde/__init__.py", "import aiokafka\n")  # runs whenever serde.* is imported
    _write(pkg, "serde/codec.py", "")
    problems = find_forbidden(build_graph(pkg, "toy"), ["toy.pure"], ["aiokafka"], [])
    assert problems == [
        "toy.pure.logic reaches aiokafka: toy.pure.logic:1 -> toy.serde.codec (parent package)"
        " -> toy.serde:1 -> aiokafka"
    ]
