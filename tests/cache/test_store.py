"""The store on a real SQLite file, against counts and records planted by hand."""

import sqlite3

import numpy as np
import pytest

from neuroscope.cache.store import Store, normalize
from neuroscope.errors import CorruptCache

from ..models import vocab


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "m.sqlite")
    s.initialize(dict(name="t", source="t", layers=2, neurons_per_layer=5, top_k=3, views=["up", "down"]), vocab())
    rng = np.random.default_rng(0)
    for layer in range(2):
        for view in ("up", "down"):
            ids = rng.integers(10, 300, size=(5, 3)).astype(np.int32)
            probs = np.sort(rng.random((5, 3)).astype(np.float32), axis=1)[:, ::-1]
            if (layer, view) == (1, "up"):
                ids[4] = [vocab().index("Dog"), vocab().index("hotdog"), 11]
                probs[4] = [0.9, 0.05, 0.01]
            if (layer, view) == (0, "down"):
                ids[2] = [12, vocab().index("\u0120dog"), 13]
                probs[2] = [0.5, 0.3, 0.1]
            s.write_unit(layer, view, (ids, probs), (ids[:, ::-1].copy(), probs[:, ::-1].copy()))
    yield s
    s.close()


def test_normalize():
    assert normalize(" Dog") == normalize("\u0120dog") == normalize("\u2581DOG") == "dog"


def test_word_match_ignores_case_and_space_markers(store):
    ids = store.match_tokens("dog", "word")
    assert sorted(vocab()[i] for i in ids) == sorted(["dog", "Dog", "\u0120dog"])
    assert [vocab()[i] for i in store.match_tokens("Dog", "exact")] == ["Dog"]
    assert sorted(vocab()[i] for i in store.match_tokens("dog", "prefix")) == sorted(
        ["dog", "Dog", "\u0120dog", "doghouse"]
    )
    assert sorted(vocab()[i] for i in store.match_tokens("dog", "contains")) == sorted(
        ["dog", "Dog", "\u0120dog", "doghouse", "hotdog"]
    )


def test_search_ranks_views_and_directions(store):
    hits = store.search("dog", max_rank=1)
    assert [(h.layer, h.neuron, h.view, h.direction, h.rank) for h in hits] == [(1, 4, "up", "pos", 0)]
    hits = store.search("dog", max_rank=2, directions=["pos"])
    assert [(h.layer, h.neuron, h.view, h.rank, h.prob) for h in hits] == [
        (1, 4, "up", 0, pytest.approx(0.9)),
        (0, 2, "down", 1, pytest.approx(0.3)),
    ]
    assert store.search("dog", max_rank=2, views=["down"], directions=["pos"])[0].neuron == 2
    assert store.search("hotdog", match="exact", max_rank=3)[0].token == "hotdog"
    assert store.search("zebra") == []


def test_show_reads_one_neuron(store):
    top = store.top(1, 4, "up", "pos")
    assert [(t.token, round(t.prob, 2)) for t in top] == [("Dog", 0.9), ("hotdog", 0.05), ("t2", 0.01)]
    assert store.top(1, 4, "up", "neg")[0].token_id == 11  # neg was written reversed
    assert store.top(0, 0, "gate", "pos") is None  # a view never decoded


def test_units_are_atomic(store, tmp_path):
    assert store.done_units() == {(0, "up"), (0, "down"), (1, "up"), (1, "down")}
    assert store.status() == {
        "model": "t",
        "source": "t",
        "hub_id": None,
        "revision": None,
        "layers": 2,
        "neurons_per_layer": 5,
        "views": ["up", "down"],
        "complete": True,
    }
    # A trigger written here makes the last statement of the unit's transaction fail, after its units and
    # decoded rows (both directions) and its postings are already inserted: all of them must roll back.
    store.conn.execute("CREATE TRIGGER boom BEFORE INSERT ON token_stats BEGIN SELECT RAISE(ABORT, 'boom'); END")
    ids = np.arange(15, dtype=np.int32).reshape(5, 3) + 20
    unit = (ids, np.full((5, 3), 0.2, np.float32))
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        store.write_unit(0, "gate", unit, unit)
    for table in ("decoded", "units", "postings"):
        assert store.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE view = 'gate'").fetchone()[0] == 0, table
    assert (0, "gate") not in store.done_units()
    store.conn.execute("DROP TRIGGER boom")
    store.write_unit(0, "gate", unit, unit)  # nothing half-written is in the way
    assert (0, "gate") in store.done_units()


def test_a_unit_is_written_once(store):
    before = store.tops(0, "up", "pos")
    unit = (np.zeros((5, 3), np.int32), np.zeros((5, 3), np.float32))
    with pytest.raises(sqlite3.IntegrityError):
        store.write_unit(0, "up", unit, unit)  # already there: a second write is a bug, not a no-op
    for a, b in zip(before, store.tops(0, "up", "pos")):
        np.testing.assert_array_equal(a, b)


def test_ready_only_with_meta_and_vocabulary(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    assert not s.ready
    s.set_meta(name="t", source="t", layers=1, neurons_per_layer=2, top_k=1, views=["up"], vocab=len(vocab()))
    assert not s.ready  # meta alone (an interrupted legacy init) is not usable
    s.initialize(dict(name="t", source="t", layers=1, neurons_per_layer=2, top_k=1, views=["up"]), vocab())
    assert s.ready and s.meta["vocab"] == len(vocab())
    s.close()


def test_corrupt_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptCache, match="corrupt.*--rebuild"):
        Store(path, readonly=True)


def test_early_stopping_search_equals_full_scan(tmp_path):
    """A query matching hundreds of tokens stops early; it must return exactly the full scan's top hits."""
    s = Store(tmp_path / "big.sqlite")
    s.initialize(dict(name="b", source="b", layers=3, neurons_per_layer=400, top_k=5, views=["up", "down"]), vocab())
    rng = np.random.default_rng(1)
    for layer in range(3):
        for view in ("up", "down"):
            ids = rng.integers(0, len(vocab()), size=(400, 5)).astype(np.int32)
            probs = np.sort(rng.random((400, 5)).astype(np.float32), axis=1)[:, ::-1].copy()
            s.write_unit(layer, view, (ids, probs), (ids[:, ::-1].copy(), probs.copy()))
    matched = s.match_tokens("t", "prefix")
    assert len(matched) > 300
    for kwargs in ({"max_rank": 1}, {"max_rank": 5}, {"max_rank": 3, "views": ["down"], "directions": ["neg"]}):
        full = s.search("t", match="prefix", limit=None, **kwargs)
        for limit in (1, 7, 50):
            assert s.search("t", match="prefix", limit=limit, **kwargs) == full[:limit]
    s.close()
