"""core.circuits.sieve against brute force: whatever the block's shape (remainder rows and columns included) and
whatever is already held, it returns every entry at or above the floor it uses, in the order the tops merge
them, and that floor never cuts an entry of a row's (column's) true top-k."""

import pytest
import torch

from neuroscope.core.circuits import sieve


def brute(block, floor, dim):
    """Every entry at or above its row's (dim 1) or column's (dim 0) floor, ordered by row or by column."""
    keep = block.abs() >= (floor[:, None] if dim == 1 else floor[None, :])
    r, c = keep.nonzero().unbind(1) if dim == 1 else keep.T.nonzero().flip(1).unbind(1)
    return r, c


@pytest.mark.parametrize("shape", [(64, 64), (61, 67), (7, 130), (130, 5), (1, 9), (200, 33)])
@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("held", [False, True])
def test_the_sieve_finds_every_entry_a_top_needs(shape, k, held):
    gen = torch.Generator().manual_seed(hash((shape, k, held)) % 2**31)
    block = torch.randn(*shape, generator=gen, dtype=torch.float64)
    for dim, find in ((1, sieve.by_row), (0, sieve.by_column)):
        lines = shape[0] if dim == 1 else shape[1]
        # a held k-th best of about the block's own: sometimes above, sometimes below what the block offers
        kept = torch.rand(lines, generator=gen, dtype=torch.float64) * 3 if held else None
        r, c, v = find(block, kept, k)
        assert torch.equal(v, block[r, c])
        line = r if dim == 1 else c
        assert torch.all(line[1:] >= line[:-1])  # ordered as the tops merge them
        # the floor it used: the smallest |w| it kept on each line bounds what it dropped from above
        mag = block.abs()
        taken = torch.zeros_like(mag, dtype=torch.bool)
        taken[r, c] = True
        assert int(taken.sum()) == r.numel()  # no entry twice
        n_cand = shape[1] if dim == 1 else shape[0]
        best = mag.topk(min(k, n_cand), dim=dim).values.amin(dim)  # each line's true k-th best
        need = mag >= (best[:, None] if dim == 1 else best[None, :])
        if kept is not None:  # what the held top already beats need not be returned
            need &= mag >= (kept[:, None] if dim == 1 else kept[None, :])
        assert torch.all(taken[need]), (dim, shape, k)
        # and nothing below a lower bound of the k-th best: every line keeps at least min(k, n) when nothing is held
        counts = taken.sum(dim)
        if kept is None:
            assert torch.all(counts >= min(k, n_cand))
