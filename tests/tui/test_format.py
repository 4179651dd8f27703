"""What the app prints for tokens, probabilities and the agreement chart (no model needed)."""

from __future__ import annotations

from neuroscope.tui.format import prob_text, show_token
from neuroscope.tui.widgets.agreement_chart import CHANCE, axis_top, chart_text


def test_invisible_and_control_tokens_are_escaped():
    assert show_token("\u00a0") == "\\u00a0"  # prints as a space otherwise
    assert show_token("\n") == "\\n" and show_token("\t") == "\\t"
    assert show_token("\u200b") == "\\u200b"
    assert show_token(" dog") == "␣dog" and show_token("[b]") == "[b]"
    assert all(c.isprintable() for c in show_token("\x00\x1b\u2028\u00ad"))


def test_no_probability_above_one_is_shown():
    assert prob_text(1.0000038) == "1.000" and prob_text(1.0006) == "1.000"  # not 1.001
    assert prob_text(0.5) == "0.500" and prob_text(3e-7) == "3e-07"


def _rows(text: str) -> list[str]:
    return text.plain.splitlines()


def test_agreement_axis_scales_to_the_data_and_draws_chance():
    fractions = [0.02, 0.05, 0.08, 0.10]  # a behaviour agreement: a few per cent per layer
    rows = _rows(chart_text(fractions, 40, 4, chance=0.03))
    bars = rows[:4]  # top row first, then the layer axis
    assert bars[0].startswith(" 10%│") and bars[-1].startswith("  0%│")
    # cells per bar: 4 wide + 1 gap after the 5-cell axis; the 10 % layer is full to the top, the 8 % one
    # fills 3.2 of 4 rows, so none is flattened to the bottom eighth
    column = {layer: [row[5 + 5 * layer] for row in bars] for layer in range(4)}
    assert column[3] == ["█"] * 4
    assert column[2][1:] == ["█"] * 3 and column[2][0] in "▁▂"
    assert column[0][-1] != " " and column[1][-2] == "█"
    # chance 3 % of a 10 % axis over 4 rows is in the second row from the bottom: a ╌ line where bars
    # stay under it (layer 0 at 2 %) and in the gaps; nowhere else
    assert [i for i, row in enumerate(bars) if CHANCE in row] == [2]
    assert bars[2][5] == CHANCE and bars[2][9] == CHANCE
    assert axis_top([0.9, 0.95]) == 1.0 and axis_top([0.004], 0.003) == 0.01 and axis_top([0.3], 0.6) == 1.0


def test_compare_chart_without_chance_keeps_the_full_axis():
    rows = _rows(chart_text([0.9, 1.0], 20, 4))
    assert rows[0].startswith("100%│") and CHANCE not in "".join(rows)
