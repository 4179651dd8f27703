"""top's O(n) selection of the best scores (neuroscope.concepts.best_indices)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, float("nan"), -1.0]) | st.floats(-2, 2), min_size=1, max_size=60),
    st.integers(1, 70),
)
def test_best_indices_equals_a_stable_sort(scores, limit):
    """top's O(n) selection against a stable argsort written here (many ties, NaN lowest)."""
    from neuroscope.concepts import best_indices

    score = np.array(scores)
    want = sorted(range(len(scores)), key=lambda i: (-(scores[i] if scores[i] == scores[i] else -math.inf), i))
    assert best_indices(score, limit).tolist() == want[:limit]
