"""The vqstack package's import graph, read from the source with ``ast``, has no cycles.

Every ``import vqstack.x`` / ``from .x import y`` counts, at module level and inside functions alike: an import moved
into a function to dodge a cycle still ties the two modules together. Imports under ``if TYPE_CHECKING:`` never run
and are left out. Importing ``vqstack.a.b`` runs ``vqstack/a/__init__.py`` too, but that edge is implied for every
module and would hide the real cycles, so only the named module (and ``y`` when it is a submodule) is an edge."""
import ast
from pathlib import Path

import pytest

PACKAGE = "vqstack"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """{"vqstack.data.images": path, "vqstack.data": path of its __init__.py, ...}."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST):
    """Every Import / ImportFrom in the tree, at any depth, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and is_type_checking(node):
            yield from (n for child in node.orelse for n in [child, *import_nodes(child)]
                        if isinstance(n, (ast.Import, ast.ImportFrom)))
            continue
        yield from import_nodes(node)


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The vqstack modules that ``module`` (its source at ``path``) imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        target = absolute(node, package)
        submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
        # "from .x import y": x.y when y is a submodule; x itself when some name is not (x's __init__ runs for it)
        found |= submodules | ({target} if len(submodules) < len(node.names) else set())
    return (found & modules.keys()) - {module}


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module an ImportFrom reads from, relative levels resolved against ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_files(root)
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def tied_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module: groups that import each other (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per group of modules that import each other."""
    return [cycle_in(graph, group) for group in tied_groups(graph)]


def describe_cycles(graph: dict[str, set[str]]) -> str:
    """One line per group: a cycle through it, and every module of the group when it holds more."""
    lines = []
    for group in tied_groups(graph):
        cycle = cycle_in(graph, group)
        more = f"  (group of {len(group)}: {', '.join(sorted(group))})" if len(group) > len(cycle) - 1 else ""
        lines.append("  " + " -> ".join(cycle) + more)
    return "\n".join(lines)


def cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first inside it)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


# --- the checker on known graphs ------------------------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / PACKAGE


def test_the_graph_sees_relative_absolute_and_function_level_imports(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "data/__init__.py": "from .images import load\n",
        "data/images.py": "def load():\n    from . import labels\n",
        "data/labels.py": "from vqstack.data.images import load\n",
        "cli.py": "import vqstack.data\nfrom .data import labels\n",
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .cli import main\n",
    })
    graph = import_graph(package)
    assert graph["vqstack.data"] == {"vqstack.data.images"}
    assert graph["vqstack.data.images"] == {"vqstack.data.labels"}  # the package is the parent: implied
    assert graph["vqstack.data.labels"] == {"vqstack.data.images"}
    assert graph["vqstack.cli"] == {"vqstack.data", "vqstack.data.labels"}
    assert graph["vqstack.typed"] == set()  # type-checking imports never run
    assert cycles(graph) == [["vqstack.data.images", "vqstack.data.labels", "vqstack.data.images"]]


def test_an_acyclic_graph_has_no_cycles():
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


# --- vqstack itself ----------------------------------------------------------------------------------------------


def test_vqstack_has_no_import_cycles():
    graph = import_graph()
    assert "vqstack.evaluation.command" in graph and "vqstack.cli" in graph  # the source was found
    if tied_groups(graph):
        pytest.fail("import cycles:\n" + describe_cycles(graph), pytrace=False)


def test_library_code_does_not_import_unittest():
    """Test doubles belong in tests: the library patches nothing at run time."""
    users = []
    for module, path in module_files().items():
        for node in import_nodes(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(name == "unittest" or name.startswith("unittest.") for name in names):
                users.append(module)
    assert users == [], f"library modules importing unittest: {', '.join(sorted(set(users)))}"
