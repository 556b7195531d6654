"""Imports run one way: nn -> ops -> backend -> kernels, read from the source with ``ast``.

Every import counts: module level, inside functions, under ``if TYPE_CHECKING``, and
``importlib.import_module`` calls with a constant name. A lazy import inside a function that dodges
a cycle at import time is still a cycle here.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

import fastnn

PACKAGE_DIR = Path(fastnn.__file__).resolve().parent

# Lower layers never import higher ones. Modules not listed here (reference, datasets, the
# package __init__) are outside the layering; they are still covered by the cycle test.
LAYERS = {
    "fastnn._version": 0, "fastnn.random": 0,
    "fastnn._C": 0, "fastnn._cuda": 0, "fastnn.cuda": 0, "fastnn.numba_kernels": 0,
    "fastnn.backend": 1,
    "fastnn.ops": 2,
    "fastnn.optim": 3,
    "fastnn.nn": 4,
}


class _Module:
    def __init__(self, name: str, path: Path, is_package: bool) -> None:
        self.name, self.path, self.is_package = name, path, is_package
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]

    def top_level_names(self) -> Set[str]:
        """Names bound at module level (what ``from <this> import name`` can mean besides a
        submodule)."""
        names: Set[str] = set()
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        return names


def _modules(root: Path, top: str) -> Dict[str, _Module]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join([top] + parts)
        out[name] = _Module(name, path, is_package)
    return out


def _resolve(level: int, module: Optional[str], anchor: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``anchor`` (a
    module name whose last part is dropped by the first dot)."""
    if not level:
        return module or ""
    base = ".".join(anchor.split(".")[:-level])
    return base + ("." + module if module else "")


def import_graph(root: Path, top: str) -> Dict[str, Set[str]]:
    """``module -> modules it imports`` for the package ``top`` in ``root`` (a compiled
    extension or a module not found counts as a leaf of that name)."""
    mods = _modules(root, top)

    def target(pkg: str, name: str) -> str:
        # ``from pkg import name``: a submodule, else a name defined by pkg's __init__, else a
        # module that is not a .py file (a compiled extension).
        sub = f"{pkg}.{name}"
        if sub in mods:
            return sub
        if pkg in mods and name in mods[pkg].top_level_names():
            return pkg
        return sub

    graph: Dict[str, Set[str]] = {}
    for name, mod in mods.items():
        edges: Set[str] = set()
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                pkg = _resolve(node.level, node.module, mod.package + ".x")
                edges.update(target(pkg, a.name) for a in node.names)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                wanted = node.args[0].value
                if wanted.startswith("."):
                    level = len(wanted) - len(wanted.lstrip("."))
                    edges.add(_resolve(level, wanted.lstrip(".") or None, name + ".x"))
                else:
                    edges.add(wanted)
        graph[name] = {e for e in edges if e == top or e.startswith(top + ".")} - {name}
    return graph


def reaches(graph: Dict[str, Set[str]], start: str, goal: str) -> Optional[List[str]]:
    """An import chain from ``start`` to ``goal``, or None."""
    seen = {start}
    stack = [[start]]
    while stack:
        chain = stack.pop()
        for nxt in sorted(graph.get(chain[-1], ())):
            if nxt == goal:
                return chain + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append(chain + [nxt])
    return None


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    for start in sorted(graph):
        chain = reaches(graph, start, start)
        if chain is not None:
            return chain
    return None


def _layer(name: str) -> Optional[int]:
    best = None
    for prefix, rank in LAYERS.items():
        if (name == prefix or name.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    return None if best is None else best[1]


GRAPH = import_graph(PACKAGE_DIR, "fastnn")


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lower,upper", [("fastnn.cuda", "fastnn.backend"),
                                         ("fastnn.nn.saving", "fastnn.nn.model")])
def test_pairs_import_one_way(lower, upper):
    assert lower in GRAPH and upper in GRAPH
    assert reaches(GRAPH, upper, lower) == [upper, lower]  # the upper one uses the lower one
    assert reaches(GRAPH, lower, upper) is None, \
        f"{lower} imports {upper}: {' -> '.join(reaches(GRAPH, lower, upper))}"


def test_no_import_cycles_in_the_package():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_import_only_downwards():
    wrong = []
    for name, edges in GRAPH.items():
        mine = _layer(name)
        if mine is None:
            continue
        for other in edges:
            theirs = _layer(other)
            if theirs is not None and theirs > mine:
                wrong.append(f"{name} (layer {mine}) imports {other} (layer {theirs})")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    """The graph must catch what the rules forbid, or the tests above prove nothing."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "VERSION = 1\nfrom . import a\n",
        "a.py": "def f():\n    from . import b\n    return b\n",
        "b.py": "import importlib\n\ndef g():\n    return importlib.import_module('pkg.a')\n",
        "c.py": "from . import _ext\nfrom . import VERSION\n",
        "sub/__init__.py": "",
        "sub/d.py": "from ..a import f\nfrom .. import c\n",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(textwrap.dedent(text))
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}                # inside a function
    assert graph["pkg.b"] == {"pkg.a"}                # importlib
    assert graph["pkg.c"] == {"pkg._ext", "pkg"}      # an extension; a name of the package
    assert graph["pkg.sub.d"] == {"pkg.a", "pkg.c"}   # relative imports two levels up
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])
    assert reaches(graph, "pkg.c", "pkg.a") == ["pkg.c", "pkg", "pkg.a"]


def test_public_api_is_unchanged():
    import fastnn.nn
    from fastnn.nn import saving

    assert isinstance(fastnn.cuda.is_available(), bool)
    assert fastnn.build_info()["version"] == fastnn.__version__
    assert callable(fastnn.set_backend) and callable(fastnn.nn.load_model)
    assert fastnn.nn.load_model is saving.load_model
    assert callable(fastnn.nn.Sequential.save)
