"""Find, in one block of virtual weights, the entries that can still enter a row's or a column's running top-k,
in as few full-size passes as the two tests allow.

A block [c, n] (c sources, n targets) feeds two tops at once: each source row's fan-out and each target column's
fan-in. An entry matters to a row only if |w| reaches that row's floor (a lower bound of its k-th best), to a
column only if it reaches the column's. The block is read four times: one |w| pass (into a reused buffer), a
compare against the rows' floors, one against the columns' (or-ed into the first), and one nonzero; only the
entries found are then split between the two tops and ranked there.

A floor is the k-th best |w| a top already holds; while it holds fewer, it is the k-th best of the block's group
maxima (runs of ``H`` consecutive rows for a column, ``G`` columns strided n/G apart for a row: fast reductions
over the middle dimension of a 3-D view). k distinct groups each hold an entry at or above the k-th best of their
maxima, so that bounds the k-th best from below; merged into about 4k coarser groups first, it stays nearly
tight (two of the top k entries seldom share a group). A remainder shorter than a group is a group of its own.
"""

from __future__ import annotations

import torch

ROWS_PER_GROUP = 8  # H: a column group's consecutive rows
COLUMN_GROUPS = 8  # G: a row group's strided columns


def groups(mag: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Group maxima of ``mag`` (|w|, so max is enough): ``dim`` 0, each column's max over runs of ``size`` rows
    ([ceil(c / size), n]); ``dim`` 1, each row's max over ``size`` columns strided n // size apart
    ([c, n // size (+ 1 for the columns past the last whole stride)])."""
    c, n = mag.shape
    size = max(1, min(size, mag.shape[dim]))
    if dim == 0:
        whole = c - c % size
        parts = [mag[:whole].view(whole // size, size, n).amax(1)] if whole else []
        if whole < c:
            parts.append(mag[whole:].amax(0, keepdim=True))
        return torch.cat(parts) if len(parts) > 1 else parts[0]
    stride = n // size
    whole = stride * size
    parts = [mag[:, :whole].view(c, size, stride).amax(1)]
    if whole < n:
        parts.append(mag[:, whole:].amax(1, keepdim=True))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def floor_of(held: torch.Tensor | None, mag: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Each row's (``dim`` 1) or column's (``dim`` 0) floor: ``held`` (the k-th best a full top holds) when
    there is one, else the k-th best of the block's coarse group maxima (0 where there are fewer than k)."""
    if held is not None:
        return held
    grouped = _coarse(groups(mag, COLUMN_GROUPS if dim == 1 else ROWS_PER_GROUP, dim), k, dim)
    if grouped.shape[dim] >= k:
        return grouped.topk(k, dim=dim, sorted=False).values.amin(dim)
    return torch.zeros(grouped.shape[1 - dim], dtype=mag.dtype, device=mag.device)


def _coarse(grouped: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Group maxima merged into about 4k coarser groups along ``dim`` (fewer to rank for the floor)."""
    m = grouped.shape[dim]
    merge = m // (4 * k)
    if merge < 2:
        return grouped
    whole = merge * (m // merge)
    head = grouped.narrow(dim, 0, whole).unflatten(dim, (m // merge, merge)).amax(dim + 1)
    if whole == m:
        return head
    return torch.cat([head, grouped.narrow(dim, whole, m - whole).amax(dim, keepdim=True)], dim)


Found = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (rows, columns, values)


def both(
    block: torch.Tensor,
    row_held: torch.Tensor | None,
    col_held: torch.Tensor | None,
    k: int,
    scratch: tuple[torch.Tensor, ...] | None = None,
) -> tuple[Found, Found]:
    """The entries of ``block`` at or above each row's floor (ordered by row) and those at or above each
    column's (ordered by column). ``row_held`` / ``col_held``: the held k-th best per row / column, None while
    a top holds fewer than k. ``scratch``: a float and two bool buffers of at least the block's size, reused."""
    c, n = block.shape
    if scratch is None:
        mag = block.abs()
        rows_in = torch.empty(mag.shape, dtype=torch.bool, device=mag.device)
        cols_in = torch.empty_like(rows_in)
    else:
        mag = torch.abs(block, out=scratch[0].view(-1)[: c * n].view(c, n))
        rows_in = scratch[1].view(-1)[: c * n].view(c, n)
        cols_in = scratch[2].view(-1)[: c * n].view(c, n)
    row_floor = floor_of(row_held, mag, k, 1)
    col_floor = floor_of(col_held, mag, k, 0)
    torch.ge(mag, row_floor[:, None], out=rows_in)
    torch.ge(mag, col_floor[None, :], out=cols_in)
    rows_in |= cols_in
    at = rows_in.view(-1).nonzero().squeeze(1)
    values, mags = block.view(-1)[at], mag.view(-1)[at]
    r, col = at // n, at % n
    out = mags >= row_floor[r]
    fan_out = (r[out], col[out], values[out])
    inn = (mags >= col_floor[col]).nonzero().squeeze(1)
    inn = inn[torch.argsort(col[inn], stable=True)]
    return fan_out, (r[inn], col[inn], values[inn])
