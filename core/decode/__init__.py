"""Neuron weight vectors -> the model's final norm -> LM head -> softmax top-k, many neurons per matmul.

For a chunk of R neuron vectors the engine does one matmul against the LM head, then a handful of
in-place passes over the R x V logits:
- block maxima (and minima) over groups of 64 tokens give each row's max/min and a small set of
  candidate columns that provably holds the top-k (a top-k element's block max is among the top-k
  block maxima), so no full top-k sort runs over the vocabulary;
- one exp pass centred between max and min, then a reciprocal pass, give both directions' softmax
  denominators: for an odd final norm (RMSNorm, bias-free LayerNorm) and a bias-free head the ``neg``
  logits are exactly minus the ``pos`` logits, and exp(c - y) = 1 / exp(y - c);
- candidates are rescored exactly in float32 from the stored weights. With a bfloat16 matmul the
  candidate set is 2k+16 wide, so bf16 rounding (about 2^-8 relative) can only change the top-k where
  more than k+16 tokens sit within that rounding of the k-th logit; the softmax denominator keeps the
  bf16 terms outside the candidates (bench/decode_bench.py measures the agreement with float32).
Only one chunk of logits is ever held.
"""

from __future__ import annotations

from ...errors import Cancelled
from .decoder import Decoder, DecodeRecipe, chunk_rows
from .device import dtype_name, pick_device, pick_dtype
from .head import Head
from .scorer import HEAD_SLICE, MAX_HALF_RANGE, Scorer

__all__ = [
    "Cancelled",
    "DecodeRecipe",
    "Decoder",
    "HEAD_SLICE",
    "Head",
    "MAX_HALF_RANGE",
    "Scorer",
    "chunk_rows",
    "dtype_name",
    "pick_device",
    "pick_dtype",
]
