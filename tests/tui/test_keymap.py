"""The help table and README's key list are made from the Bindings (docs/app.md lists the binding ids);
config.toml remaps keys and sets defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import wait_for

from neuroscope.tui.screens.help import HelpScreen

README = Path(__file__).resolve().parents[2] / "README.md"
APP_DOC = Path(__file__).resolve().parents[2] / "docs" / "app.md"  # config.toml and the binding ids
SIZE = (100, 30)


def test_readme_key_table_is_made_from_the_bindings():
    from neuroscope.tui import keys
    from neuroscope.tui.app import NeuroscopeApp

    table = keys.keys_markdown(keys.rows(NeuroscopeApp.bindings()))
    assert table in README.read_text(), "README's key table is stale: paste keys.keys_markdown(...) there"


def test_readme_lists_every_binding_id():
    from neuroscope.tui.app import NeuroscopeApp

    ids = ", ".join(f"`{i}`" for i in sorted(NeuroscopeApp.bindings()))
    assert ids in APP_DOC.read_text(), "docs/app.md's list of binding ids (config.toml keymap) is stale"


def test_every_row_names_real_bindings_and_every_binding_is_listed():
    from neuroscope.tui import keys
    from neuroscope.tui.app import NeuroscopeApp

    bindings = NeuroscopeApp.bindings()
    named = {m for _, template, _ in keys.ROWS for m in re.findall(r"\{([a-z_.]+)\}", template)}
    assert named <= set(bindings)  # keys.rows would raise KeyError otherwise
    hidden_aliases = {
        "tree.down",
        "tree.up",
        "table.down",
        "table.up",
        "help.close",
        "help.down",
        "help.up",
        "basket.down",
        "basket.up",
    }
    assert set(bindings) - named - hidden_aliases == set(), "a binding the help screen does not mention"


async def test_a_remapped_key_works_and_the_help_says_so(app_factory):
    app = app_factory()
    app.options.keymap = {"view.gate": "a"}
    app.set_keymap(app.options.keymap)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
        await pilot.press("v", "a")
        assert app.main_screen.view == "gate"
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        rows = {what: keys for _, keys, what in app.screen.rows}
        assert (
            rows["show the up / gate / down view, or keep it (two keys: a stray letter never switches the view)"]
            == "v then u / a / d / esc"
        )


def test_config_file_defaults_and_keymap(tmp_path, monkeypatch):
    from neuroscope import config
    from neuroscope.cli import parse

    path = tmp_path / "config.toml"
    path.write_text(
        '[defaults]\ndevice = "cpu"\ndtype = "float32"\ncache_dir = "/scratch/ns"\n'
        'chat_max_new_tokens = 12\n\n[keymap]\n"view.gate" = "a"\n'
    )
    monkeypatch.setenv("NEUROSCOPE_CONFIG", str(path))
    monkeypatch.delenv("NEUROSCOPE_CACHE_DIR", raising=False)
    args = parse(["show", "demo", "L1:N2"])
    assert (args.device, args.dtype, args.cache_dir) == ("cpu", "float32", "/scratch/ns")
    args = parse(["show", "demo", "L1:N2", "--dtype", "bfloat16", "--cache-dir", "here"])
    assert (args.dtype, args.cache_dir) == ("bfloat16", "here")  # the command line wins
    assert config.load().keymap == {"view.gate": "a"}
    from neuroscope.tui.options import Options

    assert Options.from_args(parse(["tui"])).chat_max_new_tokens == 12


@pytest.mark.parametrize(
    "text, message",
    [
        ("[defaults\n", "not a readable TOML file"),
        ("[colours]\n", "unknown table [colours]"),
        ("[defaults]\nspeed = 3\n", "unknown default 'speed'"),
        ("[defaults]\ndevice = 3\n", "default device must be a str"),
        ('[defaults]\ndevice = "gpu"\n', "unknown device 'gpu'"),
        ("[keymap]\nfilter = 3\n", "keymap 'filter' must be a string"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, monkeypatch, text, message):
    from tests.fuzzing import run

    path = tmp_path / "config.toml"
    path.write_text(text)
    monkeypatch.setenv("NEUROSCOPE_CONFIG", str(path))
    outcome = run(["models"])
    assert outcome.code == 2 and not outcome.problems()
    assert message in outcome.stderr and str(path) in outcome.stderr


def test_a_keymap_naming_no_binding_is_refused(tmp_path, monkeypatch):
    from tests.fuzzing import run

    path = tmp_path / "config.toml"
    path.write_text('[keymap]\n"view.sideways" = "s"\n')
    monkeypatch.setenv("NEUROSCOPE_CONFIG", str(path))
    outcome = run(["tui", "nope-model"])
    assert outcome.code == 2 and "view.sideways" in outcome.stderr and "names no binding" in outcome.stderr
