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
PACKAGES = {"neuroscope": ROOT / "neuroscope", "neuroscope.core": ROOT / "core", "neuroscope.cache": ROOT / "cache",
            "neuroscope.tui": ROOT / "tui"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Module name -> file, for every source file of the package (as it installs)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (top level, functions, conditionals)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:       # `from pkg import name` where name is not a module
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                out.add(target)
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


def graph() -> dict[str, set[str]]:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    for name in found:       # a package's __init__ is imported by every module below it: that edge is no cycle
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    return graph


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*modules().values(), *ROOT.glob("tests/**/*.py"),
                                                  *ROOT.glob("bench/*.py")]
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_errors_are_matched_by_type_never_by_class_name():
    def class_name(node) -> bool:            # type(x).__name__
        return isinstance(node, ast.Attribute) and node.attr == "__name__" and isinstance(node.value, ast.Call) \
            and getattr(node.value.func, "id", None) == "type"

    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(class_name(n) for n in (node.left, *node.comparators)):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == [], "compare exception types with isinstance, not type(x).__name__"


@pytest.mark.slow
def test_every_module_is_in_the_wheel(tmp_path):
    """Packages are found from the folders, so no module can drop out of the wheel."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("neuroscope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {name.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
            for name, path in modules().items()}
    assert want - names == set()
    assert "neuroscope/tui/app.tcss" in names


# Each choice list is declared once, in its domain module; every other module imports it. module -> names
CHOICE_LISTS = {"neuroscope.choices": ("VIEWS", "DIRECTIONS", "MATCH_MODES", "SEARCH_MATCHES", "TOP_K_RANGE"),
                "neuroscope.concepts": ("BY",), "neuroscope.core.clamp": ("MODES", "POSITIONS"),
                "neuroscope.core.options": ("DTYPES",), "neuroscope.export": ("FORMATS",),
                "neuroscope.cache.examples": ("CASES",)}


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
        declarations = {id(node.value) for node in tree.body if isinstance(node, ast.Assign)
                        and any((module, getattr(t, "id", None)) in lists for t in node.targets)}
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
        "neuroscope.copy:3 restates neuroscope.choices.VIEWS ('up', 'gate', 'down')"]
