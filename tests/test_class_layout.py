"""One class, one module: a project class extends another module's class only to extend it, never as a
mixin nor by overriding its methods (compose widgets and call plain functions instead; docs/architecture.md)."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

from .test_architecture import modules


def project_classes(found: dict[str, Path]) -> dict[tuple[str, str], tuple[ast.ClassDef, list]]:
    """(module, class) -> (its ClassDef, its bases): each base a project (module, class) when it names one
    (defined in the module or imported from another project module), else the base's name as written."""
    trees = {m: ast.parse(p.read_text()) for m, p in found.items()}
    defined = {(m, n.name): n for m, t in trees.items() for n in ast.walk(t) if isinstance(n, ast.ClassDef)}
    out = {}
    for (module, name), node in defined.items():
        here = module if found[module].name == "__init__.py" else module.rsplit(".", 1)[0]
        names = {}  # a name imported from a project module -> (module, name)
        for imp in ast.walk(trees[module]):
            if isinstance(imp, ast.ImportFrom):
                base = imp.module or ""
                if imp.level:
                    anchor = here.split(".")[: len(here.split(".")) - (imp.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                names.update({alias.asname or alias.name: (base, alias.name) for alias in imp.names})
        bases = []
        for b in node.bases:
            b = b.value if isinstance(b, ast.Subscript) else b  # ModalScreen[None]
            written = ast.unparse(b)
            target = (module, written) if (module, written) in defined else names.get(written)
            bases.append(target if target in defined else written)
        out[module, name] = (node, bases)
    return out


def cross_module_inheritance(found: dict[str, Path]) -> list[str]:
    """Classes whose methods live in another module's class, as a mixin or by overriding it.

    A project class may extend a framework's or the standard library's (textual's Screen, Widget and
    DataTable, argparse.ArgumentParser, Exception, Protocol...), and a project class of the same module.
    A base defined in another project module is allowed when it is an exception (the errors), and otherwise
    only for extension: it must not be a mixin (a class with no base outside the project: it only brings
    methods) and the subclass must not override its methods (subclass-and-intercept), unless the base
    is declared abstract (ABC, Protocol or an @abstractmethod of that name). ``__init__`` may be extended."""
    classes = project_classes(found)

    def external(key) -> list[str]:  # every non-project base up the project chain
        return [x for b in classes[key][1] for x in (external(b) if isinstance(b, tuple) else [b])]

    def methods(key) -> dict[str, bool]:  # name -> abstract, over the project chain
        node, bases = classes[key]
        out = {n: False for b in bases if isinstance(b, tuple) for n in methods(b)}
        for f in node.body:
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f.name] = any(ast.unparse(d).endswith("abstractmethod") for d in f.decorator_list)
        return out

    def exception(key) -> bool:
        return any(
            isinstance(getattr(builtins, b, None), type) and issubclass(getattr(builtins, b), BaseException)
            for b in external(key)
        )

    offenders = []
    for key, (node, bases) in classes.items():
        own = {f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))} - {"__init__"}
        for base in bases:
            if not isinstance(base, tuple) or base[0] == key[0] or exception(base):
                continue
            where = f"{key[0]}.{key[1]} (line {node.lineno}) inherits {base[0]}.{base[1]}"
            abstract = {"ABC", "Protocol"} & {b.rsplit(".", 1)[-1] for b in external(base)}
            if not [b for b in external(base) if b != "object"]:
                offenders.append(f"{where}, a mixin")
            intercepted = sorted(
                n for n, is_abstract in methods(base).items() if n in own and not (abstract or is_abstract)
            )
            if intercepted:
                offenders.append(f"{where} and overrides {', '.join(intercepted)}")
    return offenders


def test_no_cross_module_mixins():
    """One class, one module: compose widgets and call plain functions instead (docs/architecture.md)."""
    assert cross_module_inheritance(modules()) == []


def test_a_cross_module_mixin_is_found(tmp_path):
    (tmp_path / "a.py").write_text(
        "class Actions:\n    def act(self): ...\n\n\nclass Screen(Base):\n"
        "    def compose(self): ...\n\n\nclass Failure(Exception):\n    pass\n"
    )
    (tmp_path / "b.py").write_text(
        "from .a import Actions, Failure, Screen\n\n\nclass Main(Actions, Base):\n"
        "    pass\n\n\nclass Other(Screen):\n    def compose(self): ...\n\n\n"
        "class Extended(Screen):\n    def __init__(self): ...\n\n\n"
        "class Worse(Failure):\n    pass\n"
    )
    found = {"neuroscope.x.a": tmp_path / "a.py", "neuroscope.x.b": tmp_path / "b.py"}
    assert cross_module_inheritance(found) == [
        "neuroscope.x.b.Main (line 4) inherits neuroscope.x.a.Actions, a mixin",
        "neuroscope.x.b.Other (line 8) inherits neuroscope.x.a.Screen and overrides compose",
    ]
