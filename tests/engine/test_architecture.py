"""The layering rules of docs/architecture.md, checked on the source tree itself: no import circle
(lazy imports included), small modules and folders, the Blender side never loading torch, and a
repository that stands alone (no pointer to documents a clone does not have)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "blender_stchain"
MAX_MODULE_LINES = 500
MAX_FOLDER_MODULES = 14


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: dict) -> set[str]:
    """Every blender_stchain module ``path`` imports, at any depth (function-level imports too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in modules and m != name}


def _cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: _imports(p, modules) for m, p in modules.items()}
    assert sum(map(len, graph.values())) > 100  # the walk really saw the imports
    assert _cycles(graph) == []
    # a planted circle is found (the checker itself can fail)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_modules_and_folders_stay_small():
    too_long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
                if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    crowded = {str(d.relative_to(REPO)): n for d in [PACKAGE, *PACKAGE.rglob("*/")]
               if d.name != "__pycache__" and (n := len(list(d.glob("*.py")))) > MAX_FOLDER_MODULES}
    assert too_long == {} and crowded == {}


def test_blender_side_never_imports_torch():
    """Import every module of ``bl`` and ``contracts`` and register the extension, in a fresh
    interpreter: torch must not be loaded (docs/architecture.md 1: the model runs in a worker process)."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import bpy\n"
        "import blender_stchain, blender_stchain.bl as b, blender_stchain.contracts as c\n"
        "names = [m.name for p in (b, c) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        "blender_stchain.register()\n"
        "blender_stchain.unregister()\n"
        "print(len(names), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    count, torch_loaded = out.stdout.split()[-2:]
    # every module of both trees, subpackages included (bl/segment/); the two top __init__ files are packages
    assert int(count) == len(list((PACKAGE / "bl").rglob("*.py"))) + len(list((PACKAGE / "contracts").rglob("*.py"))) - 2
    assert torch_loaded == "False"


# Pointers a clone cannot follow: the team's planning documents beside the repository, and tracker numbers.
OUTSIDE = re.compile(r"\.\./shared|\bDESIGN\b|(?<![a-z])research/|(?i:\bissues? \d+)")


def test_code_points_only_inside_the_repository():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "scripts").iterdir(), REPO / "build_addon.py"]
    found = [f"{f.relative_to(REPO)}:{n}: {line.strip()}" for f in files if f.is_file()
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "\n".join(found)
    assert (REPO / "docs" / "architecture.md").is_file()


def test_the_reference_pattern_catches_what_it_is_for():
    caught = ["see ../shared/DESIGN.md", "(DESIGN 4.6)", "research/backbone.md", "(issue 12)", "Issues 3"]
    kept = ["facebookresearch/actionmesh@66db12e", "docs/architecture.md 5.6", "a design choice", "tissue 12"]
    assert all(OUTSIDE.search(s) for s in caught)
    assert not any(OUTSIDE.search(s) for s in kept)
