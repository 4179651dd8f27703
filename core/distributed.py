"""Spread a decode over several devices or machines with torch.distributed.

Layers x views are dealt round-robin to the ranks. After each round every rank hands its finished unit
to rank 0 (``gather_object``), and rank 0, the only process that touches the cache, commits them; so an
interrupted run resumes from the last round like a single-process decode. Run it with
``neuroscope decode MODEL --devices cuda:0,cuda:1`` (one process per device, spawned here) or under
``torchrun`` (each process reads RANK/WORLD_SIZE and picks ``cuda:LOCAL_RANK``). NCCL is used on CUDA,
gloo on CPU.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Callable, Sequence

import torch
import torch.distributed as dist

from ..errors import DeviceError
from .decode import pick_device
from .loading.sources import Source
from .options import DecodeRecipe, under_torchrun


def free_port() -> int:
    """A free TCP port on this machine for the ranks' rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_devices(devices: Sequence[str] | None) -> list[str]:
    """``--devices`` as given, refused (DeviceError, one line) when fewer than two or one is not there."""
    devices = list(devices or [])
    if len(devices) < 2:
        raise DeviceError("--devices needs at least two devices, e.g. cuda:0,cuda:1")
    for device in devices:
        pick_device(device)
    return devices


def run_ranks(devices: Sequence[str] | None, rank_main: Callable, args: tuple, what: str, **rank0):
    """``rank_main(rank, world, device, *args)`` as this torchrun rank, or once per device of ``devices``: rank 0
    here (with the keyword arguments ``rank0``: progress, note), the others in spawned processes (``rank_main``
    must be a module-level function). Returns rank 0's result (None on other torchrun ranks). Fewer than two
    devices, or one that is not there, fails before any process starts; if rank 0 stops (Ctrl-C, SIGTERM, an
    error) the others are terminated rather than left waiting in their next collective."""
    if under_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        return rank_main(rank, world, device, *args, **(rank0 if rank == 0 else {}))
    devices = check_devices(devices)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_spawned, args=(rank_main, r, len(devices), devices[r], *args), daemon=True)
        for r in range(1, len(devices))
    ]
    for p in procs:
        p.start()
    try:
        result = rank_main(0, len(devices), devices[0], *args, **rank0)
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        for p in procs:
            p.join(timeout=60)
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"a {what} worker process failed (exit code {bad[0]})")
    return result


def _spawned(rank_main, rank, world, device, *args) -> None:
    rank_main(rank, world, device, *args)


def join_group(rank: int, world: int, device: str, stack: ExitStack) -> None:
    """Join the ranks' process group (NCCL on CUDA, gloo on CPU), left when ``stack`` closes."""
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world)
    stack.callback(dist.destroy_process_group)


def decode_distributed(
    source: Source,
    devices: Sequence[str] | None,
    recipe: DecodeRecipe | None = None,
    *,
    cache_dir=None,
    rebuild: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    note: Callable[[str], None] | None = None,
):
    """Decode the recipe (its device aside: each rank has its own) with one process per device (spawned), or
    as this torchrun rank. Returns rank 0's result (other torchrun ranks return None)."""
    args = (source, recipe or DecodeRecipe(), str(cache_dir) if cache_dir else None, rebuild, trust_remote_code)
    return run_ranks(devices, _run_rank, args, "decode", progress=progress, note=note)


def _run_rank(
    rank: int,
    world: int,
    device: str,
    source: Source,
    recipe: DecodeRecipe,
    cache_dir,
    rebuild: bool,
    trust_remote_code: bool,
    progress=None,
    note=None,
):
    from ..cache.catalog import cache_path, decode_lock
    from .decode import Decoder, dtype_name, pick_dtype
    from .loading.modelinfo import inspect_model
    from .loading.models import load_for_decode
    from .options import check_dtype
    from .pipeline import DecodeResult, discard_if_empty, open_for_decode

    check_dtype(recipe.dtype)
    info = inspect_model(source)
    views = info.check_views(recipe.views)
    recipe = replace(recipe, views=views)
    note = note or (lambda _msg: None)
    started = time.perf_counter()
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    with ExitStack() as stack:
        join_group(rank, world, device, stack)
        lm = load_for_decode(source, trust_remote_code=trust_remote_code)
        plan: list = [None]
        store = None
        if rank == 0:  # the only process that touches the cache
            lock = stack.enter_context(decode_lock(path, note))
            auto = dtype_name(pick_dtype("auto", pick_device(device)))
            store, todo, precision, created = open_for_decode(source, lm, info, recipe, auto, cache_dir, rebuild, note)
            stack.callback(store.close)
            plan = [(todo, store.top_k, precision)]
        dist.broadcast_object_list(plan, src=0)
        todo, k, precision = plan[0]
        decoder = Decoder(lm.adapter, replace(recipe, top_k=k, device=device, dtype=precision))
        described = f"{world} x {decoder.describe()}"
        neurons = lm.adapter.neurons
        if store is not None:
            store.set_meta(decoded_with=described)
        try:
            for start in range(0, len(todo), world):
                mine = todo[start + rank] if start + rank < len(todo) else None
                result = (mine, decoder.decode_unit(*mine)) if mine is not None else None
                gathered: list | None = [None] * world if rank == 0 else None
                dist.gather_object(result, gathered, dst=0)
                if store is not None and gathered is not None:  # rank 0, the one holding the store
                    for item in gathered:
                        if item is not None:
                            (layer, view), (pos, neg) = item
                            store.write_unit(layer, view, pos, neg, described)
                    if progress is not None:
                        progress(min(len(todo), start + world) * neurons, len(todo) * neurons)
        except BaseException:
            if store is not None:
                discard_if_empty(store, lock, created)
            raise
        if store is None:
            return None
        store.touch()
        return DecodeResult(
            path, list(views), lm.adapter.num_layers * neurons, time.perf_counter() - started, len(todo), described
        )
