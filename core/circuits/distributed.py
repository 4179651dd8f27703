"""Spread the circuit graph's pass over several devices or machines with torch.distributed, as core.distributed
does for the decode.

Source layers are dealt round-robin to the ranks: a rank multiplies only its own layers' down columns with each
target layer's read rows, so it holds their whole fan-out (every target passes through it) and its share of
every fan-in. After each unit (one target layer) every rank hands its part to rank 0 (``gather_object``): the
fan-in shares are merged into one top-k per target, the fan-outs and token tops are each one rank's alone. Rank
0, the only process that touches the cache, commits the unit, so a stopped run resumes from its last unit like
a single-process pass. ``--devices cuda:0,cuda:1`` spawns one process per device; under ``torchrun`` each
process reads RANK/WORLD_SIZE and picks ``cuda:LOCAL_RANK``. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ...cache.edges import Packed
from ..distributed import join_group, run_ranks
from ..loading.sources import Source
from .spec import GraphResult, graph_spec, open_edges


def merge_fan_ins(parts: list[dict[str, Packed]], k: int) -> dict[str, Packed]:
    """Each target's top-k by |weight| over every rank's share (each sorted, highest first), sorted again."""
    out = {}
    for via in parts[0]:
        ids = np.concatenate([p[via].ids for p in parts], axis=1)
        vias = np.concatenate([p[via].vias for p in parts], axis=1)
        weights = np.concatenate([p[via].weights for p in parts], axis=1)
        order = np.argsort(-np.abs(weights), axis=1, kind="stable")[:, :k]
        out[via] = Packed(
            np.take_along_axis(ids, order, 1), np.take_along_axis(vias, order, 1), np.take_along_axis(weights, order, 1)
        )
    return out


def _union(parts) -> dict:
    """One dict of every rank's entries (each key is one rank's alone)."""
    return {key: value for part in parts for key, value in part.items()}


def graph_distributed(
    source: Source,
    devices: Sequence[str] | None,
    *,
    cache_dir=None,
    top: int,
    rebuild: bool = False,
    trust_remote_code: bool = False,
    chunk_elements: int | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
    note: Callable[[str], None] | None = None,
):
    """The graph with one process per device (spawned), or as this torchrun rank: rank 0's GraphResult (other
    torchrun ranks return None)."""
    args = (source, str(cache_dir) if cache_dir else None, top, rebuild, trust_remote_code, chunk_elements, dtype)
    return run_ranks(devices, _run_rank, args, "circuit graph", progress=progress, note=note)


def _run_rank(
    rank: int,
    world: int,
    device: str,
    source: Source,
    cache_dir,
    top: int,
    rebuild: bool,
    trust_remote_code: bool,
    chunk_elements: int | None,
    dtype: torch.dtype,
    progress=None,
    note=None,
):
    from ...cache.catalog import cache_path, decode_lock
    from ...cache.store import Store
    from ..loading.modelinfo import inspect_model
    from ..loading.models import load_for_decode
    from .graph import CHUNK_ELEMENTS, GraphPass
    from .weights import CircuitWeights

    info = inspect_model(source)
    spec = graph_spec(info.views, info.layers, info.neurons, top)
    note = note or (lambda _msg: None)
    started = time.perf_counter()
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    with ExitStack() as stack:
        join_group(rank, world, device, stack)
        lm = load_for_decode(source, trust_remote_code=trust_remote_code)
        plan: list = [None]
        edges = None
        if rank == 0:  # the only process that touches the cache
            stack.enter_context(decode_lock(path, note))
            store = Store(path)
            stack.callback(store.close)
            edges, done = open_edges(store, source, info, lm, spec, rebuild, note)
            plan = [(done, edges.partial() if done else {})]
        dist.broadcast_object_list(plan, src=0)
        done, partial = plan[0]
        cw = CircuitWeights(lm.adapter, torch.device(device), dtype)
        graph = GraphPass(cw, top, chunk_elements or CHUNK_ELEMENTS, owns=lambda layer: layer % world == rank)
        units = graph.units

        def commit(t, fan_in, fan_out, partial_rows, seconds, tokens) -> None:
            gathered: list | None = [None] * world if rank == 0 else None
            dist.gather_object((fan_in, fan_out, partial_rows, seconds, tokens), gathered, dst=0)
            if edges is None or gathered is None:
                return
            fan_ins, fan_outs, partials, spent, token_tops = zip(*gathered)
            edges.commit(
                t, merge_fan_ins(list(fan_ins), top), _union(fan_outs), _union(partials), max(spent), _union(token_tops)
            )

        graph.run(done, partial, commit, progress if rank == 0 else None)
        todo = len(units) - len(done)
        if rank != 0:
            return None
        return GraphResult(path, todo, time.perf_counter() - started, f"{world} x {device}")
