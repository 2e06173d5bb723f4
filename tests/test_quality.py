"""Quality gates that run with the test suite: ruff, the layering contract, no import cycles
(imports inside functions count), every module importable, the package doctests collected.

The README's code blocks are checked by ``tests/test_readme.py``.
"""

from __future__ import annotations

import configparser
import importlib
import re
import subprocess
import sys
import traceback
from pathlib import Path

import medfound

ROOT = Path(__file__).resolve().parents[1]
#: what ruff checks (folders that do not exist yet, like bundles/, are left out until they do)
LINT_PATHS = ("medfound", "tests", "examples", "bundles")


def _checkout_graph():
    """grimp's import graph of this checkout's ``medfound`` (imports inside functions included)."""
    import grimp

    package = Path(medfound.__file__).resolve().parent
    assert package == ROOT / "medfound", (
        f"the tests import medfound from {package}, not from this checkout ({ROOT / 'medfound'}): "
        "run `python -m pytest` from the repository root, or install it with `pip install -e .`")
    return grimp.build_graph("medfound", cache_dir=None)


def strongly_connected_components(graph) -> list[list[str]]:
    """Import cycles: the strongly connected components of more than one module (Tarjan's
    algorithm, iterative), each sorted, in sorted order.

    >>> import grimp
    >>> g = grimp.ImportGraph()
    >>> for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
    ...     g.add_import(importer=importer, imported=imported)
    >>> strongly_connected_components(g)
    [['p.a', 'p.b', 'p.c']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def describe_cycle(graph, component: list[str]) -> str:
    """A shortest cycle through the component's first module, then every import inside the
    component (with line numbers): the imports to break."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier and start not in previous:  # breadth-first search back to ``start``
        following = []
        for node in frontier:
            for nxt in sorted(graph.find_modules_directly_imported_by(node) & members):
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    cycle = [start]
    while len(cycle) == 1 or cycle[-1] != start:
        cycle.append(previous[cycle[-1]])
    cycle.reverse()

    def lines(importer: str, imported: str) -> str:
        details = graph.get_import_details(importer=importer, imported=imported)
        return ", ".join(f"l.{d['line_number']}: {d['line_contents'].strip()}" for d in details)

    text = ["cycle: " + " -> ".join(cycle), "imports inside the component:"]
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            text.append(f"  {importer} -> {imported} ({lines(importer, imported)})")
    return "\n".join(text)


def test_no_import_cycles():
    graph = _checkout_graph()
    components = strongly_connected_components(graph)
    assert not components, (f"{len(components)} import cycle(s) in medfound (imports inside functions count):\n\n"
                            + "\n\n".join(describe_cycle(graph, c) for c in components))


def test_import_contract():
    """The layers contract in setup.cfg ([importlinter:contract:layers]), checked by import-linter."""
    _checkout_graph()
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
               "setup.cfg", "--no-cache"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "BROKEN" not in output, output[output.find("Contracts"):] or output


def test_ruff_clean():
    paths = [p for p in LINT_PATHS if (ROOT / p).exists()]
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *paths], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"ruff check {' '.join(paths)}:\n{proc.stdout}{proc.stderr}"


def _optional_imports() -> set[str]:
    """Top-level import names of the optional extras (label, dicomseg) that are not core."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        found = {re.split(r"[<>=!~ ;\[]", r.strip(), maxsplit=1)[0] for r in text.splitlines() if r.strip()}
        return {n.lower().replace("-", "_") for n in found if not n.startswith("%")}

    extras = cfg["options.extras_require"]
    core = names(cfg["options"]["install_requires"])
    return (names(extras["label"]) | names(extras["dicomseg"])) - core


def test_every_module_imports():
    """Every module imports, except where an optional extra is missing (its doctests are then
    skipped, see setup.cfg). Catches what ``--doctest-ignore-import-errors`` would hide."""
    optional = _optional_imports()
    assert {"monailabel", "highdicom"} <= optional
    failures, skipped = [], []
    for name in sorted(_checkout_graph().modules):
        if name.split(".")[-1] == "__main__":
            continue  # runs the command line when imported
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] in optional:
                skipped.append(f"{name} (needs {err.name})")
            else:
                failures.append(f"{name}:\n{traceback.format_exc(limit=-3)}")
        except Exception:  # noqa: BLE001 - any import failure is reported
            failures.append(f"{name}:\n{traceback.format_exc(limit=-3)}")
    assert not failures, "modules that fail to import:\n" + "\n".join(failures)


def test_package_doctests_are_collected(pytestconfig):
    """The test command runs the package's docstring examples (setup.cfg: testpaths, addopts)."""
    assert pytestconfig.getoption("doctestmodules"), "run with --doctest-modules (setup.cfg addopts)"
    assert "medfound" in pytestconfig.getini("testpaths")

