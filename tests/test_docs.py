"""README is a front page and docs/ holds the rest: README stays short, its Quick start is the two make
targets, every relative link (and #anchor) in README and docs/*.md leads somewhere, every path the pages
name exists, and every `neuroscope …` example they show is accepted (or, where it shows a usage error,
refused) by the real argument parser."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """Link targets outside code (fenced blocks and inline code are not markdown)."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text)


def section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def test_readme_is_a_front_page():
    lines = README.read_text().count("\n")
    assert lines <= 400, f"README.md has {lines} lines: move detail into docs/ (at most 400)"


def test_quick_start_is_the_two_make_targets_and_names_the_torch_it_installs():
    quick = section(README.read_text(), "Quick start")
    blocks = re.findall(r"^```\w*\n(.*?)^```", quick, re.M | re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]
    pinned = re.search(r"torch==([\d.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert f"torch {pinned}" in quick, f"Quick start should say that `make` installs torch {pinned}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / link.split("#")[0]).resolve() for link in links(README) if "://" not in link}
    orphans = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert DOCS.is_dir() and not orphans, f"docs pages README does not link: {orphans}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(page):
    dead = []
    for link in links(page):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            dead.append(f"{link}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            dead.append(f"{link}: {path.name} has no heading with anchor #{anchor}")
    assert not dead, f"{page.name}:\n" + "\n".join(dead)


def named_paths(page: Path) -> set[str]:
    """Repository paths a page names in inline code: `core/arch.py`, `tui/widgets/`, `tests/models.py`."""
    text = page.read_text()
    return {p for p in re.findall(r"`([\w.-]+(?:/[\w.-]+)+/?)`", text) if re.search(r"\.(py|toml|md|tcss)$|/$", p)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_page_names_exists(page):
    missing = []
    for name in sorted(named_paths(page)):
        if (ROOT / name).exists() or (ROOT / "neuroscope" / name).exists():  # `cli/model.py`: neuroscope/cli/…
            continue
        missing.append(name)
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


def examples(page: Path):
    """(argv after `neuroscope`, refused?) for every `$ neuroscope …` of a console block and every
    `neuroscope …` line of a sh block; refused when the output shown is argparse's usage."""
    for lang, body in re.findall(r"^```(console|sh)\n(.*?)^```", page.read_text(), re.M | re.S):
        lines = body.splitlines()
        for i, line in enumerate(lines):
            command = line[2:] if lang == "console" and line.startswith("$ ") else line if lang == "sh" else ""
            if "neuroscope " not in command or "$" in command:  # $v: a shell loop's variable
                continue
            output = []
            for after in lines[i + 1 :]:
                if after.startswith("$ "):
                    break
                output.append(after)
            lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
            if "neuroscope" not in words:
                continue
            argv = words[words.index("neuroscope") + 1 :]
            stop = next((k for k, w in enumerate(argv) if w in ("|", ";", "&&", "||", ">", "<", "&")), len(argv))
            yield argv[:stop], any(o.startswith("usage:") for o in output)


def test_the_pages_show_command_examples():
    found = [argv for page in PAGES for argv, _ in examples(page)]
    assert len(found) >= 30 and ["decode", "demo"] in found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_example_parses_as_shown(page, capsys):
    from neuroscope.cli import parse

    wrong = []
    for argv, refused in examples(page):
        try:
            parse(list(argv))
            ok = True
        except SystemExit:
            ok = False
        if ok == refused:
            said = "parses, but the page shows a usage error" if refused else capsys.readouterr().err.strip()
            wrong.append(f"neuroscope {shlex.join(argv)}: {said.splitlines()[-1]}")
    assert not wrong, f"{page.name}:\n" + "\n".join(wrong)


def subparsers() -> dict:
    from neuroscope.cli.parser import build_parser

    actions = build_parser()._actions
    return next(a for a in actions if isinstance(a, argparse._SubParsersAction)).choices


def test_docs_commands_has_a_section_naming_every_option_of_every_command():
    """docs/commands.md: `## name` per command, naming each of its options (the options every command
    takes may be named once, above the first section)."""
    text = (DOCS / "commands.md").read_text()
    intro = text[: text.index("\n## ")]
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    problems = []
    for name, parser in subparsers().items():
        if name not in sections:
            problems.append(f"no '## {name}' section")
            continue
        options = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        named = {o for o in options if re.search(re.escape(o) + r"(?![\w-])", sections[name] + intro)}
        if options - named:
            problems.append(f"{name}: {sorted(options - named)} not documented")
    assert not problems, "docs/commands.md:\n" + "\n".join(problems)
