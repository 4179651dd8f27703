"""core.circuits.sieve against brute force: whatever the block's shape (remainder rows and columns included) and
whatever is already held, it returns every entry a row's or a column's top needs, each once, in the order the
tops merge them, with a floor that never cuts an entry of a line's true top-k."""

import pytest
import torch

from neuroscope.core.circuits import sieve


def check(block, r, c, v, held, k, dim):
    """dim 1: (r, c, v) are a fan-out's candidates (per row); dim 0: a fan-in's (per column)."""
    assert torch.equal(v, block[r, c])
    line = r if dim == 1 else c
    assert torch.all(line[1:] >= line[:-1])  # ordered as the tops merge them
    mag = block.abs()
    taken = torch.zeros_like(mag, dtype=torch.bool)
    taken[r, c] = True
    assert int(taken.sum()) == r.numel()  # no entry twice
    n_cand = block.shape[dim]
    best = mag.topk(min(k, n_cand), dim=dim).values.amin(dim)  # each line's true k-th best
    need = mag >= (best[:, None] if dim == 1 else best[None, :])
    if held is not None:  # what the held top already beats need not be returned
        need &= mag >= (held[:, None] if dim == 1 else held[None, :])
        assert torch.all(mag[r, c] >= (held[r] if dim == 1 else held[c]))  # nor anything under the held floor
    assert torch.all(taken[need])
    if held is None:  # the group floor keeps at least k a line
        assert torch.all(taken.sum(dim) >= min(k, n_cand))


@pytest.mark.parametrize("shape", [(64, 64), (61, 67), (7, 130), (130, 5), (1, 9), (200, 33), (1000, 300)])
@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("held", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("scratch", [False, True])
def test_the_sieve_finds_every_entry_both_tops_need(shape, k, held, scratch):
    gen = torch.Generator().manual_seed(hash((shape, k, held)) % 2**31)
    block = torch.randn(*shape, generator=gen, dtype=torch.float64)
    # held k-th bests about the block's own: sometimes above, sometimes below what it offers
    row_held = torch.rand(shape[0], generator=gen, dtype=torch.float64) * 3 if held[0] else None
    col_held = torch.rand(shape[1], generator=gen, dtype=torch.float64) * 3 if held[1] else None
    buffers = None
    if scratch:  # larger than the block, as the pass's are for its last, shorter chunk
        size = (shape[0] + 3, shape[1])
        buffers = (
            torch.empty(size, dtype=torch.float64),
            torch.empty(size, dtype=torch.bool),
            torch.empty(size, dtype=torch.bool),
        )
    fan_out, fan_in = sieve.both(block, row_held, col_held, k, buffers)
    check(block, *fan_out, row_held, k, 1)
    check(block, *fan_in, col_held, k, 0)
