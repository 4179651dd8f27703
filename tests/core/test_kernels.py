"""The blockwise scorer (the GPU path) and its fused Triton kernels, against float64 references.

The kernels run here in Triton's interpreter (TRITON_INTERPRET=1, in a child process so the setting
cannot leak into other tests); on a GPU the decoder compiles them and checks them against the same torch
twins before using them (core.decode.kernels.fused_ok)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from neuroscope.core.decode import Decoder, DecodeRecipe, Head, Scorer, kernels
from neuroscope.core.loading.models import load_for_decode
from neuroscope.core.loading.sources import resolve

from .. import reference
from .test_decode import VIEWS


def _stats_f64(y: np.ndarray):
    rows, vocab = y.shape
    out = [np.empty((rows, math.ceil(vocab / 64))) for _ in range(4)]
    for b in range(out[0].shape[1]):
        blk = y[:, b * 64 : (b + 1) * 64]
        hi, lo = blk.max(1), blk.min(1)
        out[0][:, b], out[1][:, b] = hi, lo
        out[2][:, b] = np.exp(blk - hi[:, None]).sum(1)
        out[3][:, b] = np.exp(lo[:, None] - blk).sum(1)
    return out


def test_block_stats_torch_matches_float64():
    gen = torch.Generator().manual_seed(1)
    y = (torch.randn(9, 1000, generator=gen) * 30).to(torch.bfloat16)  # 1000 = 15 blocks + a partial one
    got = kernels.block_stats_torch(y)
    want = _stats_f64(y.double().numpy())
    assert got[0].shape == (9, 16)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5)


def test_gather_dot_torch_matches_float64():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 70, generator=gen)
    w = torch.randn(500, 70, generator=gen).to(torch.bfloat16)
    cols = torch.randint(0, 500, (6, 36), generator=gen)
    want = np.einsum("rch,rh->rc", w.double().numpy()[cols.numpy()], x.double().numpy())
    np.testing.assert_allclose(kernels.gather_dot_torch(x, w, cols).numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_blockwise_engine_matches_float64_reference(model_dirs, kind, dtype):
    lm = load_for_decode(resolve(str(model_dirs[kind])))
    dec = Decoder(lm.adapter, DecodeRecipe(device="cpu", dtype=dtype, engine="blockwise", budget_mb=1))
    assert dec.engine in ("blockwise", "fused")
    for layer in range(2):
        for view in VIEWS[kind]:
            for (ids, probs), direction in zip(dec.decode_unit(layer, view), ("pos", "neg")):
                ref_ids, ref_probs = reference.decode(model_dirs[kind], kind, layer, view, direction, 10)
                np.testing.assert_array_equal(ids, ref_ids, err_msg=f"{kind} L{layer} {view} {direction}")
                np.testing.assert_allclose(probs, ref_probs, rtol=1e-3 if dtype == "float32" else 2e-2)


def test_blockwise_handles_a_logit_range_too_wide_for_one_centre(model_dirs):
    """Logits spanning thousands of nats: every block term is <= 1, so nothing overflows or vanishes."""
    lm = load_for_decode(resolve(str(model_dirs["llama"])))
    head = Head(lm.adapter, torch.device("cpu"), torch.float32)
    scorer = Scorer(head, 5, kernels.block_stats_torch)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, head.hidden, generator=gen) * 20
    (pos_ids, pos_p), (neg_ids, neg_p) = scorer.score(x, both=True)
    logits = x.double() @ head.w_exact.double().t()
    assert float((logits.amax(1) - logits.amin(1)).min()) > 400
    for sign, ids, probs in ((1, pos_ids, pos_p), (-1, neg_ids, neg_p)):
        ref_ids = (sign * logits).topk(5, dim=1).indices
        ref_p = torch.softmax(sign * logits, dim=1).gather(1, ref_ids)
        assert torch.equal(ids, ref_ids)
        assert torch.isfinite(probs).all() and (probs[:, 0] > 0.1).all()
        np.testing.assert_allclose(probs.double().numpy(), ref_p.numpy(), rtol=1e-4, atol=1e-35)


def test_auto_engine_on_cpu_is_classic(model_dirs):
    lm = load_for_decode(resolve(str(model_dirs["llama"])))
    assert Decoder(lm.adapter, DecodeRecipe(device="cpu")).engine == "classic"
    with pytest.raises(ValueError, match="unknown engine"):
        Decoder(lm.adapter, DecodeRecipe(device="cpu", engine="turbo"))


INTERPRETED = """
import json, torch
from neuroscope.core.decode import kernels
assert kernels.fused_ok("cpu")
gen = torch.Generator().manual_seed(4)
out = {{}}
y = (torch.randn(11, 1000, generator=gen) * 30).to(torch.bfloat16)
buf = torch.zeros(11, 1100, dtype=torch.bfloat16); buf[:, :1000] = y      # a row slice of a wider buffer
got, want = kernels.block_stats(buf[:, :1000]), kernels.block_stats_torch(y)
out["stats"] = max(float(((g - w).abs() / w.abs().clamp_min(1e-30)).max()) for g, w in zip(got, want))
x = torch.randn(7, 300, generator=gen)
w = torch.randn(700, 300, generator=gen).to(torch.bfloat16)
cols = torch.randint(0, 700, (7, 36), generator=gen)
ref = (w.double()[cols] * x.double()[:, None, :]).sum(-1)
out["dot"] = float((kernels.gather_dot(x, w, cols).double() - ref).abs().max())
from neuroscope.core.decode import DecodeRecipe, Decoder
from neuroscope.core.loading.models import load_for_decode
from neuroscope.core.loading.sources import resolve
lm = load_for_decode(resolve({model!r}))
dec = Decoder(lm.adapter, DecodeRecipe(device="cpu", dtype="float32", engine="blockwise"))
out["engine"] = dec.engine
out["units"] = {{f"{{l}}:{{v}}": [p[0].tolist() for p in dec.decode_unit(l, v)] for l in range(2)
                for v in ("up", "gate", "down")}}
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_in_the_interpreter(model_dirs):
    code = textwrap.dedent(INTERPRETED).format(model=str(model_dirs["llama"]))
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["stats"] < 1e-5 and out["dot"] < 1e-3
    assert out["engine"] == "fused"
    for unit, (pos_ids, neg_ids) in out["units"].items():
        layer, view = unit.split(":")
        for ids, direction in ((pos_ids, "pos"), (neg_ids, "neg")):
            ref_ids, _ = reference.decode(model_dirs["llama"], "llama", int(layer), view, direction, 10)
            np.testing.assert_array_equal(np.array(ids), ref_ids, err_msg=f"{unit} {direction}")
