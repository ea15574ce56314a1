"""No import cycle in pyside/mailslot (issue 14.6).

Every .py file under pyside/mailslot is parsed (ast, nothing imported) and every
import statement in it counts -- at the top of the module and inside functions,
relative and absolute: a lazy import still ties the two modules together. An edge
goes to the module an import names: `from . import x` to the submodule x when x is
one, else to the package; `from .a import b` to a (or to a.b when that is a module).
Strongly connected components of that graph are the cycles; each one found is
printed as a path. Not seen: imports of a computed name -- the Sieve extension
loader's __import__ (sieve/extensions/__init__.py), which loads an extension
module by the name a script requires; those modules import the interpreter to
register their handlers in it, a plug-in registry rather than a static cycle.

KNOWN_CYCLES lists the cycles other work in flight is removing, with who removes
them. The test fails on any cycle not listed, and on a listed one that no longer
exists, so the list only shrinks, to empty.
"""

import ast
import os

from tests.support import REPO

ROOT = os.path.join(REPO, "pyside")
PACKAGE = "mailslot"

# Empty: every cycle is gone (cli<->deliver by core, sieve mail<->mime by sievemem).
KNOWN_CYCLES = frozenset()


def modules():
    """{module name: (path, is_package)} for every module of the package."""
    found = {}
    for directory, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


def imports_of(module, path, is_package, known):
    """The modules of `known` that module's import statements name."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if is_package else module.rpartition(".")[0]
    edges = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in known:    # import a.b.c names a.b.c
                    name = name.rpartition(".")[0]
                if name:
                    edges.add(name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = base + "." + alias.name
                if sub in known:
                    edges.add(sub)
                elif base in known:
                    edges.add(base)
    edges.discard(module)
    return edges


def import_graph():
    known = modules()
    return {m: imports_of(m, path, is_pkg, known) for m, (path, is_pkg) in known.items()}


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        # iterative, so a long chain cannot hit the recursion limit
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.add(w)
                        if w == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_path(graph, component):
    """One closed path through a component, for the failure message."""
    start = min(component)
    path, seen = [start], {start}
    node = start
    while True:
        nxt = sorted(w for w in graph[node] if w in component)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return " -> ".join(path + [start])
        step = next((w for w in nxt if w not in seen), None)
        if step is None:
            return " -> ".join(path + [nxt[0]])
        path.append(step)
        seen.add(step)
        node = step


def describe(graph, components):
    lines = []
    for component in sorted(components, key=min):
        path = cycle_path(graph, component)
        rest = sorted(component - set(path.split(" -> ")))
        lines.append(path + (" (same cycle: %s)" % ", ".join(rest) if rest else ""))
    return "\n".join(lines)


def test_the_walker_sees_function_level_and_relative_imports():
    """The probe works: edges that are only lazy or relative are in the graph."""
    graph = import_graph()
    # sieve/__init__.py imports runner only inside run(); sieve_filing imports sieve
    # with `from . import sieve` inside a function.
    assert "mailslot.sieve.runner" in graph["mailslot.sieve"]
    assert "mailslot.sieve" in graph["mailslot.sieve_filing"]
    assert "mailslot.errors" in graph["mailslot.sieve.cache"]
    demo = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(demo) == [frozenset("abc")]
    assert describe(demo, cycles(demo)) == "a -> b -> c -> a"


def test_no_import_cycle():
    graph = import_graph()
    found = set(cycles(graph))
    new = found - KNOWN_CYCLES
    gone = KNOWN_CYCLES - found
    assert not new, "import cycles:\n" + describe(graph, new)
    assert not gone, ("these cycles are gone: delete them from KNOWN_CYCLES\n"
                      + "\n".join(" <-> ".join(sorted(c)) for c in gone))
