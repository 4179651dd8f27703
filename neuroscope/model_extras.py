"""The API's Model methods for what neurons do on text (neuroscope.behaviour) and for concepts
(neuroscope.concepts), kept apart from api.py."""
from __future__ import annotations

import threading

from .errors import UsageError
from .results import Records, as_ref, check_view_direction


class TextAndConcepts:
    typed: str | None = None            # the MODEL as the user typed it (neuroscope.open sets it), for hints

    @property
    def typed_arg(self) -> str:
        """The MODEL argument a hint repeats: as the user typed it (``demo``, not the GGUF's path), quoted for
        a shell where it needs to be."""
        import shlex

        return shlex.quote(self.typed or self.source.source)

    def check_shape(self, check) -> None:
        """``check(layers, neurons)`` against the cache when it is there, else the model's headers: what the
        user asked for is checked before any weight loads or decode starts."""
        cached = self._cached_store()
        if cached is None:
            check(self.info.layers, self.info.neurons)
            return
        with cached:
            check(cached.layers, cached.neurons)

    # -- behaviour (neuroscope.behaviour) -----------------------------------------------------------
    def trace(self, prompt: str, chat: bool = False, top: int = 10, neurons=None):
        """One forward pass with hooks: each token's top neurons by |activation| (labelled, with GLU cases),
        and ``neurons``' activation at every token (a core.activations.Trace)."""
        from .behaviour import trace

        return trace(self, prompt, chat, top, neurons)

    def examples(self, corpus=None, tokens: int = 100_000, per_neuron: int = 20, window: int | None = None,
                 batch: int = 8, rebuild: bool = False, cancel: threading.Event | None = None, commit_s: float = 30.0,
                 text_column: str | None = None):
        """Every neuron's top ``per_neuron`` examples by activation, each sign, over the first ``tokens`` tokens
        of ``corpus`` (default: the King James Bible; or a .txt file, a folder of text files, a .jsonl/
        .parquet/.csv file's ``text_column`` (default "text"), a ``save_to_disk`` folder, a Hugging Face
        dataset "name[:config][@split]") in rows of ``window`` tokens (default 128, or the model's context
        where shorter); committed every ``commit_s`` seconds, so resumable; cached (an ExamplesResult)."""
        from .behaviour import examples

        return examples(self, corpus, tokens, per_neuron, window, batch, rebuild, cancel, commit_s, text_column)

    def activations(self, prompt: str, refs, chat: bool | None = None):
        """The natural (unclamped) activation of each neuron over the prompt's tokens: Activation(ref, min,
        max, last). ``chat`` None: through the chat template when the model has one."""
        from .core.generate import Tokenized, build_prompt, has_chat_template
        from .core.measure import natural_activation

        refs = [as_ref(r) for r in refs]
        self.info.check_refs(refs)
        tokens = Tokenized(self.source, self.tokenizer())
        chat = has_chat_template(tokens.tokenizer) if chat is None else chat
        built = build_prompt(tokens, prompt, chat)           # an empty prompt: before the model loads
        lm = self.loaded()
        return Records(natural_activation(lm, built, refs))

    # -- concepts (neuroscope.concepts) -------------------------------------------------------------
    def top(self, by: str = "score", view: str | None = None, layer: int | None = None, limit: int = 20,
            direction: str | None = None, min_mass: float = 0.0) -> Records:
        """The most specialised neurons: by score (default: label mass x the specificity of the label's word,
        so content words come first), label mass, top-1 prob, entropy (lowest), copy, suppression, or cosine
        (read row against down column; measured from the weights on first use); ``min_mass``: only labels
        holding at least this much of their neuron's top-k mass."""
        from .concepts import BY, ensure_cosines, top

        check_view_direction(view, direction)
        if by not in BY:
            raise UsageError(f"unknown --by {by!r}: choose {', '.join(BY)}")
        if by == "cosine" and view == "down":
            raise UsageError("--by cosine relates a read view (up, gate) to the down view: choose --view up or gate")
        if layer is not None and (not isinstance(layer, int) or isinstance(layer, bool)):
            raise UsageError(f"layer must be a whole number, not {layer!r}")

        def check(layers: int, _neurons: int) -> None:
            if layer is not None and not 0 <= layer < layers:
                raise UsageError(f"layer {layer} is out of range: the model has layers 0-{layers - 1}")
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise UsageError("--limit must be a whole number of at least 1")

        with self.store(view, check=check):
            pass                                    # decoded (and labelled) first, once the input is checked
        if by == "cosine":
            ensure_cosines(self)
        with self.store(view) as store:
            return top(store, by, view, layer, limit, direction, min_mass)

    def concept(self, word: str, views=None) -> Records:
        """Every neuron labelled ``word`` in any view and direction, with the sign that pushes it out."""
        from .concepts import check_concept_word, concept

        if views:
            self.info.check_views([views] if isinstance(views, str) else list(views))   # before any decode
        check_concept_word(self, word)             # a word no token has fails before any decode
        with self.store() as store:
            return concept(store, word, views, self.name)

    def agreement(self, seed: int = 0):
        """How often the decode names what neurons respond to, per view and layer (core.agreement)."""
        from .behaviour import agreement

        return agreement(self, seed)

    def export(self, fmt: str = "jsonl", out=None, views=None, workers: int | None = 1) -> int:
        """Every neuron-direction's top-k with its label, as jsonl, csv or parquet, to ``out`` (a path; None:
        stdout for jsonl and csv). Returns the row count; a failed export leaves no partial file.
        ``workers``: processes formatting jsonl/csv (None: one per core for large exports, as the CLI does;
        they are spawned, so a plain script needs the usual ``if __name__ == "__main__":`` guard)."""
        from .export import check_out, export

        path = check_out(out, fmt)               # before any work
        if views:
            self.info.check_views(views)
        with self.store() as store:
            progress, close = self._progress("export")
            try:
                return export(store, fmt, path, views, progress=progress, workers=workers)
            finally:
                close()
