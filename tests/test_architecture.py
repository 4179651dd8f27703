"""The shape of the code: no import cycles among the project's modules (imports inside functions count),
no source file over 400 lines, every module inside the wheel, and no error recognised by its class name."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "neuroscope": ROOT / "neuroscope",
    "neuroscope.core": ROOT / "core",
    "neuroscope.cache": ROOT / "cache",
    "neuroscope.tui": ROOT / "tui",
}
MAX_LINES = 400


def modules(packages: dict[str, Path] = PACKAGES) -> dict[str, Path]:
    """Module name -> file, for every source file of the package (as it installs)."""
    found = {}
    for package, folder in packages.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` depends on through the imports anywhere in its file (top level, functions,
    conditionals): an edge is a module whose code must have run for the import to work.

    - ``import a.b.c`` and ``from a.b import c`` (c a module): a.b.c, and the package __init__s a and a.b
      above it, which Python runs first;
    - ``from a.b import name`` (name not a module): a.b itself, whose code defines the name.

    One edge is left out: to a package this module lies inside (its ancestor), when the import only passes
    through it to a submodule (``from . import sibling``, ``from ..cache.store import Store``). Python has
    already started that __init__ before this module runs and reads nothing from it: counting the edge would
    make every package whose __init__ imports a submodule a cycle. Importing a NAME from an ancestor's
    __init__ (``from . import Model`` in neuroscope/behaviour.py) does count: it needs the code of that
    __init__, which imports api, which imports ... back to this module."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rsplit(".", 1)[0]
    parts = name.split(".")
    started = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # this module and the packages above it

    def project_module(target: str) -> str:
        while target and target not in known:  # `from pkg import name` where name is not a module
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target

    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            through, named = [project_module(alias.name) for alias in node.names], set()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            through = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            named = {project_module(base)} if len(through) < len(node.names) else set()
            through += named
        else:
            continue
        for target in filter(None, through):
            if target in named or target not in started:
                out.add(target)
            above = target
            while "." in above:  # the packages Python runs on the way to the target
                above = above.rsplit(".", 1)[0]
                if above in known and above not in started:
                    out.add(above)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def graph(packages: dict[str, Path] = PACKAGES) -> dict[str, set[str]]:
    found = modules(packages)
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_a_name_imported_from_the_package_init_is_a_cycle(tmp_path):
    """The root's shape: the package __init__ imports api, api imports the services; a service that takes a
    name from the package (even inside a function) closes a cycle, one that imports a sibling module does
    not, and neither does a package above it that it only passes through."""
    write(
        tmp_path,
        {
            "pkg/__init__.py": "from .api import Model\n",
            "pkg/api.py": "from .sub.service import run\nclass Model: ...\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/service.py": "from .. import errors\nfrom ..errors import Oops\n\n"
            "def run():\n    from .. import Model\n",
            "pkg/errors.py": "class Oops(Exception): ...\n",
        },
    )
    packages = {"pkg": tmp_path / "pkg"}
    found = graph(packages)
    assert found["pkg.sub.service"] == {"pkg", "pkg.errors"}  # the name Model, then errors by both routes
    assert cycles(found) == [["pkg", "pkg.api", "pkg.sub.service"]]
    write(tmp_path, {"pkg/sub/service.py": "from .. import errors\n\ndef run():\n    from ..errors import Oops\n"})
    assert graph(packages)["pkg.sub.service"] == {"pkg.errors"} and cycles(graph(packages)) == []


def test_a_package_init_on_the_way_to_a_module_counts(tmp_path):
    """Importing lib.store from outside lib runs lib/__init__ first: if that __init__ imports the importer,
    the two are a cycle even though neither names the other's module."""
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/app.py": "from .lib.store import Store\n",
            "pkg/lib/__init__.py": "from ..app import App\n",
            "pkg/lib/store.py": "class Store: ...\n",
        },
    )
    found = graph({"pkg": tmp_path / "pkg"})
    assert found["pkg.app"] == {"pkg.lib", "pkg.lib.store"}
    assert cycles(found) == [["pkg.app", "pkg.lib"]]


def test_no_source_file_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in [*modules().values(), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_errors_are_matched_by_type_never_by_class_name():
    def class_name(node) -> bool:  # type(x).__name__
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "__name__"
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "type"
        )

    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(class_name(n) for n in (node.left, *node.comparators)):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == [], "compare exception types with isinstance, not type(x).__name__"


@pytest.mark.slow
def test_every_module_is_in_the_wheel(tmp_path):
    """Packages are found from the folders, so no module can drop out of the wheel."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("neuroscope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {
        name.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        for name, path in modules().items()
    }
    assert want - names == set()
    assert "neuroscope/tui/app.tcss" in names


# Each choice list is declared once, in its domain module; every other module imports it. module -> names
CHOICE_LISTS = {
    "neuroscope.choices": ("VIEWS", "DIRECTIONS", "MATCH_MODES", "SEARCH_MATCHES", "TOP_K_RANGE"),
    "neuroscope.concepts": ("BY",),
    "neuroscope.core.clamp": ("MODES", "POSITIONS"),
    "neuroscope.core.options": ("DTYPES",),
    "neuroscope.export": ("FORMATS",),
    "neuroscope.cache.examples": ("CASES",),
}


def declared_choices(found: dict[str, Path]) -> dict[tuple[str, str], tuple]:
    """(module, name) -> the list's values, read from each declaring module's source (nothing imported: a
    starred name, ``(*MATCH_MODES, "label")``, is expanded from a list declared above it)."""
    out: dict[tuple[str, str], tuple] = {}
    for module, names in CHOICE_LISTS.items():
        known: dict[str, tuple] = {}
        for node in ast.parse(found[module].read_text()).body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if not isinstance(target, ast.Name) or not isinstance(node.value, (ast.Tuple, ast.List)):
                continue
            values: list = []
            for elt in node.value.elts:
                values.extend(known[elt.value.id] if isinstance(elt, ast.Starred) else [ast.literal_eval(elt)])
            known[target.id] = tuple(values)
        for name in names:
            out[module, name] = known[name]
    return out


def restated_choices(found: dict[str, Path]) -> list[str]:
    """Every tuple, list or set literal of two or more constants that holds the same values as a declared
    choice list (in any order), outside that list's own declaration. A docstring is no literal, and a
    one-element default (``["up"]``) or a subset (the read views ``("up", "gate")``) is another fact."""
    lists = declared_choices(found)
    offenders = []
    for module, path in found.items():
        tree = ast.parse(path.read_text())
        declarations = {
            id(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and any((module, getattr(t, "id", None)) in lists for t in node.targets)
        }
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set)) or len(node.elts) < 2 or id(node) in declarations:
                continue
            if not all(isinstance(e, ast.Constant) for e in node.elts):
                continue
            values = sorted(repr(e.value) for e in node.elts)
            for (home, name), want in lists.items():
                if values == sorted(repr(v) for v in want):
                    offenders.append(f"{module}:{node.lineno} restates {home}.{name} {tuple(want)}")
    return offenders


def test_each_choice_list_is_defined_once():
    """Views, directions, match modes, sort keys, clamp modes and positions, dtypes, formats, GLU cases and
    the top-k bounds: one declaration each; argparse, the app, the API and the engine import it."""
    assert restated_choices(modules()) == []


def test_a_restated_choice_list_is_found(tmp_path):
    found = modules()
    copy = tmp_path / "copy.py"
    copy.write_text('"""up, gate, down"""\nWANTED = ["up"]\nfor view in ("down", "up", "gate"):\n    pass\n')
    assert restated_choices({**found, "neuroscope.copy": copy}) == [
        "neuroscope.copy:3 restates neuroscope.choices.VIEWS ('up', 'gate', 'down')"
    ]
