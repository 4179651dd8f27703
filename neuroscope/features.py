"""Dictionary (SAE) features through the decode's lens, for the CLI (and later the API and the app): a feature's
decoder row (``dec``: what it writes into the residual stream) or its encoder column (``enc``: what it reads),
through the model's final norm and LM head, top-k in both directions, by the same engine that decodes neurons
(core.decode's Decoder, on one vector). Everything the headers can tell (the feature, the dictionary's fit
with the model) is checked before the model loads. Nothing is cached yet: each call decodes on the fly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .cache.schema import TopToken
from .choices import DEFAULT_TOP_K, DIRECTIONS, FEATURE_VIEWS
from .concepts import Label
from .core.arch import SitePoint
from .core.dictionaries import Dictionary, open_dictionary
from .core.options import DecodeRecipe, check_top_k
from .core.refs import FeatureRef
from .errors import UsageError

Model = Any  # neuroscope.api.Model (imported by the API: naming it here would be a cycle)


@dataclass(frozen=True)
class Feature:
    """One feature's top tokens in one view and direction, with its label (None: no word holds LABEL_FLOOR of
    the top-k mass) and where its dictionary reads the model. ``as_dict()`` is ``show MODEL F7 --sae PATH
    --json``."""

    model: str
    ref: FeatureRef
    view: str
    direction: str
    top: list[TopToken]
    label: Label | None
    dictionary: Dictionary
    site: SitePoint
    provenance: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            **{k: self.provenance.get(k) for k in ("hub_id", "revision")},
            "feature": self.ref.feature,
            "layer": self.dictionary.hook.layer,
            "view": self.view,
            "direction": self.direction,
            "label": self.label.label if self.label else None,
            "label_mass": self.label.mass if self.label else None,
            "top": [{"token_id": t.token_id, "token": t.token, "prob": t.prob} for t in self.top],
            "sae": self.dictionary.describe(),
        }


def as_feature_ref(value) -> FeatureRef:
    if isinstance(value, FeatureRef):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return FeatureRef(value)
    return FeatureRef.parse(value)


def checked(model: Model, sae, ref, view: str, direction: str) -> tuple[Dictionary, FeatureRef, SitePoint]:
    """The dictionary opened and held against the model's headers, the feature against its width, the view and
    direction against their choices: every refusal is one line, before any weight loads."""
    if view not in FEATURE_VIEWS:
        raise UsageError(f"unknown feature view {view!r}: choose {', '.join(FEATURE_VIEWS)}")
    if direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r}: choose {', '.join(DIRECTIONS)}")
    ref = as_feature_ref(ref)
    dictionary = sae if isinstance(sae, Dictionary) else open_dictionary(sae)
    site = dictionary.check(model.info)
    return dictionary, ref.check(dictionary.d_sae), site


def feature(model: Model, sae, ref, view: str = "dec", direction: str = "pos", top_k: int = DEFAULT_TOP_K) -> Feature:
    """Feature ``ref`` (``"F7"``, 7 or a FeatureRef) of dictionary ``sae`` (a SAELens folder or a Dictionary):
    its ``view`` vector through the model's final norm and LM head, top ``top_k`` tokens in ``direction``."""
    dictionary, ref, site = checked(model, sae, ref, view, direction)
    top_k = check_top_k(top_k)
    vector = dictionary.vector(ref.feature, view)
    import torch

    from .core.decode import Decoder
    from .core.loading.models import load_for_decode

    lm = load_for_decode(model.source, trust_remote_code=model.trust_remote_code)
    decoder = Decoder(lm.adapter, DecodeRecipe(top_k=top_k, device=model.device, dtype=model.dtype))
    rows = torch.from_numpy(vector).float().unsqueeze(0)
    pos, neg = decoder.decode_unit(dictionary.hook.layer, f"{ref} {view}", vectors=rows)
    ids, probs = (pos if direction == "pos" else neg)[0][0], (pos if direction == "pos" else neg)[1][0]
    texts = lm.token_texts()
    top = [TopToken(r, int(i), texts[int(i)], float(p)) for r, (i, p) in enumerate(zip(ids, probs))]
    return Feature(model.name, ref, view, direction, top, _label(texts, ids, probs), dictionary, site, model.provenance)


def _label(texts: list[str], ids, probs) -> Label | None:
    """The concept label of one top-k, by the rules the cache labels neurons with (cache.labels)."""
    from .cache.labels import key_tables, label_unit

    keys, own, _freq, word, _spec = key_tables(list(texts))
    label, mass, count, entropy = label_unit(ids[None], probs[None], word[own])
    if int(label[0]) == 0:
        return None
    return Label(keys[int(label[0])], float(mass[0]), int(count[0]), float(entropy[0]))
