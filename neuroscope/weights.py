"""The model's tokenizer and the whole model, for the API's Model (neuroscope.api), whose methods of those
names call these: each is loaded once, on first use, under the model's lock (the app loads it in a worker
while the UI may ask for the tokenizer)."""

from __future__ import annotations


def tokenizer(model):
    """Model.tokenizer: the tokenizer alone (prompts are checked with it before the model loads)."""
    with model._lm_lock:
        if model._tokenizer is None:
            from .core.loading.models import load_tokenizer

            model._tokenizer = load_tokenizer(model.source, model.trust_remote_code)
        return model._tokenizer


def loaded(model):
    """Model.loaded: the whole model and tokenizer, on the model's ``device``."""
    tokenizer = model.tokenizer()
    with model._lm_lock:
        if model._lm is None:
            import torch

            from .core.decode import pick_device
            from .core.loading.models import load

            device = pick_device(model.device)
            model.note(f"loading {model.name} ({model.source.source})")
            dtype = "auto" if model.dtype == "auto" else getattr(torch, model.dtype)
            lm = load(model.source, trust_remote_code=model.trust_remote_code, dtype=dtype, tokenizer=tokenizer)
            if device.type != "cpu":
                lm.model.to(device)
            model._lm = lm
        return model._lm
