"""The house rules, read from the code itself (DESIGN §4):

- no import circle between modules, and none between rooms: on every floor (the modules and
  sub-rooms of one package) the imports form a DAG, so a type two rooms share lives below both;
- `cloudboot/` never imports `lab/`;
- no module over 500 lines;
- every dependency pyproject.toml declares is imported somewhere (and where it is used says
  what for: the design notes list each);
- the README's architecture map names exactly the rooms that exist.

Every import counts: top-level, inside functions, under TYPE_CHECKING, and the module names
`LazyModule("…")` and the kexec planner table load by name.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cloudboot", "lab")
MAX_LINES = 500


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = modules()


def _owner(name: str) -> str | None:
    """The module `name` lives in (a dotted attribute path resolves to its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:  # `from pkg import sub` depends on pkg.sub, not on pkg
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"(cloudboot|lab)(\.\w+)+", node.value):
            found.add(node.value)  # LazyModule("cloudboot.init.…"), planner tables
    return {o for name in found if (o := _owner(name)) and o != module}


EDGES = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def packages() -> list[str]:
    return sorted(m for m, p in MODULES.items() if p.name == "__init__.py")


def floor(package: str) -> dict[str, set[str]]:
    """The import graph of one floor: the package's own modules and each sub-room (all the
    modules below it) as one node."""
    depth = len(package.split("."))

    def node(m: str) -> str | None:
        if m == package or not m.startswith(package + "."):
            return None
        return ".".join(m.split(".")[: depth + 1])

    graph: dict[str, set[str]] = defaultdict(set)
    for a, targets in EDGES.items():
        na = node(a)
        for b in targets:
            nb = node(b)
            if na and nb and na != nb:
                graph[na].add(nb)
    return graph


def test_no_module_imports_in_a_circle() -> None:
    assert _cycle(EDGES) is None, f"import circle: {' -> '.join(_cycle(EDGES) or [])}"


@pytest.mark.parametrize("package", packages())
def test_each_floor_is_a_dag(package: str) -> None:
    cycle = _cycle(floor(package))
    assert cycle is None, (f"rooms of {package} import in a circle: {' -> '.join(cycle or [])}; "
                           "move what they share below both")


def test_cloudboot_never_imports_lab() -> None:
    bad = sorted((a, b) for a, bs in EDGES.items() if a.startswith("cloudboot")
                 for b in bs if b.startswith("lab"))
    assert not bad, bad


def test_no_module_over_the_house_limit() -> None:
    files = [p for d in (*PACKAGES, "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    files.append(ROOT / "noxfile.py")
    big = {str(p.relative_to(ROOT)): n for p in files
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"over {MAX_LINES} lines, split by job: {big}"


# Distribution name -> the top-level module it installs.
IMPORT_NAMES = {"virt-firmware": "virt", "python-hcl2": "hcl2", "qemu.qmp": "qemu",
                "libvirt-python": "libvirt", "pytest-xdist": "xdist",
                "pytest-timeout": "pytest_timeout"}
# Tools the dev extra installs for the command line (and pytest plugins it loads), not for import.
COMMAND_LINE_TOOLS = {"ruff", "mypy", "nox", "tox", "pytest-timeout", "pytest-xdist",
                      "pytest-repeat", "pytest-rerunfailures"}
# Declared for another dependency's sake (pyproject.toml says why next to each).
FOR_OTHERS = {"setuptools", "jsonschema"}


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    return sorted({re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in names})


def _imported_top_levels() -> set[str]:
    tops: set[str] = set()
    for d in (*PACKAGES, "tests", "benchmarks"):
        for p in (ROOT / d).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Import):
                    tops |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    tops.add(node.module.split(".")[0])
    return tops


def test_every_declared_dependency_is_used() -> None:
    used = _imported_top_levels() | {"pytest"}
    unused = [d for d in _declared() if d not in COMMAND_LINE_TOOLS | FOR_OTHERS
              and IMPORT_NAMES.get(d, d.replace("-", "_").lower()) not in used]
    assert not unused, f"declared in pyproject.toml, imported nowhere: {unused}"


def test_readme_map_names_every_room() -> None:
    """The README's architecture map (an indented tree of `name/` entries) lists each room of
    cloudboot/ and lab/ (a folder with an __init__.py), and nothing else under them."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Architecture", 1)[1].split("```", 2)[1]
    stack: list[str] = []
    named = set()
    for line in block.splitlines():
        m = re.match(r"( *)(\w+)/(\s|$)", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack[depth:] = [m.group(2)]
        if stack[0] in PACKAGES:
            named.add("/".join(stack))
    rooms = {str(p.parent.relative_to(ROOT)) for m, p in MODULES.items()
             if p.name == "__init__.py"}
    assert named == rooms, (f"in the map but not a room: {sorted(named - rooms)}; "
                            f"rooms missing from the map: {sorted(rooms - named)}")
