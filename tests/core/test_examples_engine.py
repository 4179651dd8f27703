"""The examples engine's running top-N against a brute force over every activation at once (numpy), with and
without ties, through the dense merge, the buffered fast path and a state saved and loaded mid-way; the
dense merge's top-k against a stable order made here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroscope.core import example_state as engine
from neuroscope.core.activations import CASES


def brute_force(acts, gates, ups, per):
    """Each neuron's top ``per`` by (value descending, position ascending), for both signs, and case counts."""
    act, gate, up = (np.concatenate(x) for x in (acts, gates, ups))  # [rows, n]
    rows, n = act.shape
    codes = (gate <= 0) * 2 + (up <= 0)
    out = {}
    for sign, signed in enumerate((act, -act)):
        vals, pos, case = (np.zeros((per, n), np.float32), np.zeros((per, n), np.int64), np.zeros((per, n), np.int8))
        for j in range(n):
            order = sorted(range(rows), key=lambda r: (-signed[r, j], r))[:per]
            vals[:, j], pos[:, j], case[:, j] = signed[order, j], order, codes[order, j]
        out[sign] = (vals, pos, case)
    counts = np.stack([(codes == c).sum(0) for c in range(len(CASES))])
    return out, counts, (act > 0).sum(0)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("path", ["dense", "fast", "fast, saved and loaded"])
@pytest.mark.parametrize("glu", ["gate and up given", "up's sign derived"])
def test_running_top_n_equals_brute_force(monkeypatch, ties, path, glu):
    """``glu``: the engine is given gate and up, or (SiLU, as the hooks do) only gate's sign, the signs of
    up following from act = silu(gate) * up; the brute force always sees the true up."""
    monkeypatch.setattr(engine, "BUFFER", 700)  # flush often: many merges of the buffer
    gen = torch.Generator().manual_seed(3)
    n, per, rows = 37, 6, 64
    state = engine.LayerState.empty(n, per, True, "cpu")
    acts, gates, ups = [], [], []
    for batch in range(25):
        gate, up = torch.randn(rows, n, generator=gen), torch.randn(rows, n, generator=gen)
        if glu == "gate and up given":
            act = torch.randn(rows, n, generator=gen) * (1 + batch % 4)
            if ties:
                act = act.round()  # many equal activations
        else:
            if ties:  # few values, never 0: many equal activations
                gate, up = (gate * 2).round() / 2 + 0.25, (up * 2).round() / 2 + 0.25
            act = torch.nn.functional.silu(gate) * up * (1 + batch % 4)
        positions = torch.arange(batch * rows, (batch + 1) * rows)
        state.update(act, gate, up if glu == "gate and up given" else None, positions, dense=path == "dense")
        acts.append(act.numpy()), gates.append(gate.numpy()), ups.append(up.numpy())
        if path.endswith("loaded") and batch == 11:
            state = engine.LayerState.from_numpy(state.to_numpy(), "cpu")
    got = state.to_numpy()
    want, counts, positive = brute_force(acts, gates, ups, per)
    for sign in (0, 1):
        np.testing.assert_array_equal(got["vals"][sign], want[sign][0])
        np.testing.assert_array_equal(got["pos"][sign], want[sign][1])
        np.testing.assert_array_equal(got["case"][sign], want[sign][2])
    np.testing.assert_array_equal(got["cases"], counts)
    np.testing.assert_array_equal(got["positive"], positive)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 12),
    st.integers(1, 30),
    st.sampled_from(["normal", "ties", "nan"]),
    st.integers(0, 2**16),
)
def test_stable_top_equals_a_stable_order_made_here(rows, n, k, kind, seed):
    """The dense merge's top-k (a torch top-k plus tie handling) against sorting by (value desc, row)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n, generator=gen)
    if kind == "ties":
        x = (x * 2).round()  # many equal values at every boundary
    if kind == "nan":
        x[int(torch.randint(rows, (1,), generator=gen)), 0] = float("nan")
    v, r = engine.stable_top(x, k)
    want = [
        sorted(
            range(rows),
            key=lambda i, j=j: (not bool(x[i, j].isnan()), -float(x[i, j]) if not bool(x[i, j].isnan()) else 0.0, i),
        )[:k]
        for j in range(n)
    ]  # NaN first, as torch sorts
    assert r.t().tolist() == want
    assert torch.allclose(v, x.gather(0, r), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("glu", ["no gate", "gate and up given", "up's sign derived"])
@pytest.mark.parametrize("path", ["dense", "fast"])
def test_infinite_and_nan_activations(path, glu):
    """+inf ranks first, NaN is never an example (it ranks as -inf), whichever merge sees them, with or
    without a gate; the rest, each example's case, the GLU case counts and the positive counts equal counts
    made here. ``up's sign derived`` (the GLU gate path: gate given, up not): the infinities come from an
    infinite up through act = silu(gate) * up, so their up is known; a NaN activation counts as not positive,
    so its up counts as > 0 exactly when its gate is not."""
    gen = torch.Generator().manual_seed(5)
    n, per, rows = 9, 4, 32
    gated, derived = glu != "no gate", glu == "up's sign derived"
    state = engine.LayerState.empty(n, per, gated, "cpu")
    acts, gates, ups = [], [], []
    for batch in range(12):
        act = torch.randn(rows, n, generator=gen)
        gate, up = torch.randn(rows, n, generator=gen), torch.randn(rows, n, generator=gen)
        spots = torch.randint(rows * n, (6,), generator=gen)
        planted = up if derived else act
        planted.view(-1)[spots[:2]] = torch.inf
        planted.view(-1)[spots[2:4]] = -torch.inf
        if derived:
            act = torch.nn.functional.silu(gate) * up  # gate is never 0: no inf * 0
        act.view(-1)[spots[4:]] = torch.nan
        state.update(
            act,
            gate if gated else None,
            up if glu == "gate and up given" else None,
            torch.arange(batch * rows, (batch + 1) * rows),
            dense=path == "dense",
        )
        acts.append(act.numpy()), gates.append(gate.numpy()), ups.append(up.numpy())
    got = state.to_numpy()
    act, gate_pos, up_pos = np.concatenate(acts), np.concatenate(gates) > 0, np.concatenate(ups) > 0
    if derived:
        up_pos = np.where(np.isnan(act), ~gate_pos, up_pos)
    codes = (~gate_pos) * 2 + (~up_pos)  # CASES' order: ++, +-, -+, --
    for sign, signed in enumerate((act, -act)):
        clean = np.where(np.isnan(signed), -np.inf, signed)
        for j in range(n):
            order = sorted(range(len(clean)), key=lambda r: (-clean[r, j], r))[:per]
            np.testing.assert_array_equal(got["pos"][sign][:, j], order)
            np.testing.assert_array_equal(got["vals"][sign][:, j], clean[order, j])
            if gated:
                np.testing.assert_array_equal(got["case"][sign][:, j], codes[order, j])
    assert np.isinf(got["vals"]).any() and np.isnan(act).any()  # the specials were there to rank
    np.testing.assert_array_equal(got["positive"], (act > 0).sum(0))  # NaN is not > 0
    if gated:
        np.testing.assert_array_equal(got["cases"], np.stack([(codes == c).sum(0) for c in range(len(CASES))]))
