"""Find, in one block of virtual weights, the entries that can still enter a row's or a column's running top-k,
with as few full-size passes as each test allows.

A block [c, n] (c sources, n targets) feeds two tops at once: each source row's fan-out and each target column's
fan-in. An entry matters to a row only if |w| reaches that row's floor (a lower bound of its k-th best), to a
column only if it reaches the column's. Testing every entry costs an |w| pass, a compare and a nonzero per
direction, as much as a third of the matmul on a CPU. Instead the block is cut into groups and only each group's
largest |w| is tested:

- for columns, runs of ``H`` consecutive rows (a fast reduction over the middle dimension of a [c/H, H, n] view);
- for rows, ``G`` columns strided n/G apart (the same fast reduction over a [c, G, n/G] view), only while a
  row's top is still empty.

The group maxima give the floors where a top is still empty (k distinct groups each hold an entry at or above
the k-th best of their maxima, so it bounds the k-th best from below) and, for the columns, the groups to open:
only the opened groups' entries are read and tested exactly. The rows' test stays dense (see by_row). A final
remainder of rows (columns) shorter than a group is one group of its own. The result is exactly the entries at
or above each floor, in the order each top merges them.
"""

from __future__ import annotations

import torch

ROWS_PER_GROUP = 8  # H: a column group's consecutive rows
COLUMN_GROUPS = 8  # G: a row group's strided columns


def _peak(view: torch.Tensor) -> torch.Tensor:
    """max |x| over dimension 1 of a 3-D view, read as max(max x, -min x): no |x| tensor is made."""
    return torch.maximum(view.amax(1), view.amin(1).neg_())


def _floor(held: torch.Tensor | None, groups: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """The larger of two lower bounds of each row's (``dim`` 1) or column's (``dim`` 0) k-th best: the k-th best
    |w| already held (``held``, None while fewer than k are) and the k-th best of the block's group maxima."""
    if groups.shape[dim] >= k:
        bound = groups.topk(k, dim=dim, sorted=False).values.amin(dim)
        return bound if held is None else torch.maximum(held, bound)
    if held is not None:
        return held
    return torch.zeros(groups.shape[1 - dim], dtype=groups.dtype, device=groups.device)


def column_groups(block: torch.Tensor, h: int) -> torch.Tensor:
    """[ceil(c / h), n]: each column's max |w| over each run of ``h`` rows (the last run may be shorter)."""
    c, n = block.shape
    whole = c - c % h
    parts = [_peak(block[:whole].view(whole // h, h, n))] if whole else []
    if whole < c:
        parts.append(_peak(block[whole:].unsqueeze(0)))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def row_groups(block: torch.Tensor, g: int) -> torch.Tensor:
    """[c, n // g (+ 1)]: each row's max |w| over each group of ``g`` columns strided n // g apart (the columns
    past the last whole stride, if any, form one more group)."""
    c, n = block.shape
    stride = n // g
    whole = stride * g
    parts = [_peak(block[:, :whole].view(c, g, stride))] if stride else []
    if whole < n:
        parts.append(_peak(block[:, whole:].unsqueeze(2)))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def by_row(block: torch.Tensor, held: torch.Tensor | None, k: int, g: int = COLUMN_GROUPS, scratch=None):
    """The entries of ``block`` at or above each row's floor: (rows, columns, values), ordered by row. A row's
    floor is its held k-th best, or, while it holds fewer, the k-th best of its strided column groups' maxima.
    The test itself is dense (one |w| pass, one compare, one nonzero; into ``scratch`` = (float, bool) buffers of
    at least the block's size when given): a fan-out's held floor passes a few entries in a hundred, which
    opens too many groups of 8 to gain from them."""
    c, n = block.shape
    if held is None:
        floor = _floor(None, _coarse(row_groups(block, max(1, min(g, n))), k, 1), k, 1)
    else:
        floor = held
    if scratch is None:
        mask = block.abs() >= floor[:, None]
    else:
        mag = torch.abs(block, out=scratch[0].view(-1)[: c * n].view(c, n))
        mask = torch.ge(mag, floor[:, None], out=scratch[1].view(-1)[: c * n].view(c, n))
    at = mask.view(-1).nonzero().squeeze(1)
    return at // n, at % n, block.view(-1)[at]


def by_column(block: torch.Tensor, held: torch.Tensor | None, k: int, h: int = ROWS_PER_GROUP):
    """The entries of ``block`` at or above each column's floor: (rows, columns, values), ordered by column.
    The opened groups are read in row-major order (h rows at a time stay in cache), then the few entries kept
    are sorted by column."""
    c, n = block.shape
    h = max(1, min(h, c))
    groups = column_groups(block, h)
    floor = _floor(held, _coarse(groups, k, 0), k, 0)
    grp, col = (groups >= floor[None, :]).nonzero().unbind(1)
    m = torch.arange(h, device=block.device)
    flat = (grp * (h * n) + col)[:, None] + (m * n)[None, :]
    valid = None
    if c % h:  # the last group's rows past the block: no entry
        valid = (grp[:, None] * h + m[None, :]) < c
        flat = torch.where(valid, flat, col[:, None])
    at, values = _pick(block, flat, floor[col], valid)
    rows, cols = at // n, at % n
    order = torch.argsort(cols, stable=True)
    return rows[order], cols[order], values[order]


def _coarse(groups: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Group maxima merged into about 4k coarser groups along ``dim`` (fewer to rank for the floor; with 4k
    groups a floor's k-th best seldom has two of the top k entries in one group, so it stays nearly tight)."""
    m = groups.shape[dim]
    merge = m // (4 * k)
    if merge < 2:
        return groups
    whole = merge * (m // merge)
    head = groups.narrow(dim, 0, whole).unflatten(dim, (m // merge, merge)).amax(dim + 1)
    if whole == m:
        return head
    return torch.cat([head, groups.narrow(dim, whole, m - whole).amax(dim, keepdim=True)], dim)


def _pick(block: torch.Tensor, flat: torch.Tensor, floor: torch.Tensor, valid: torch.Tensor | None):
    """Read the entries at flat indices ``flat`` [m, g] of the contiguous block and keep those at or above their
    line's ``floor`` [m] (and ``valid``): their flat indices and values, in the order given."""
    values = block.view(-1)[flat]
    keep = values.abs() >= floor[:, None]
    if valid is not None:
        keep &= valid
    at = keep.view(-1).nonzero().squeeze(1)
    return flat.view(-1)[at], values.view(-1)[at]
