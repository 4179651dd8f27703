"""The notebook API. The CLI and the app are thin layers over it.

    import neuroscope
    demo = neuroscope.open("demo")
    demo.decode()                                   # a progress bar in a terminal or a notebook
    demo.neuron("L29:N808").top(view="gate")        # [TopToken(rank=0, token_id=..., token=' dog', prob=0.66), ...]
    demo.search("dog", max_rank=3).to_pandas()
    demo.clamp({"L29:N808": 20}, prompt="What is your favourite animal?", chat=True, target="dog")
    neuroscope.compare("base-model", "tuned-model").same_top1

Everything returns plain dataclasses (``as_dict()`` gives what the CLI prints with ``--json``); lists come
as :class:`Records`, whose ``to_pandas()`` makes a DataFrame where pandas is installed. Every user error
is a :class:`neuroscope.NeuroscopeError` with a one-line message; any other exception is a bug.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from . import clamping, comparing, decoding, weights
from .cache.catalog import cache_path
from .cache.schema import TopToken
from .cache.store import Hit, Store
from .choices import DEFAULT_TOP_K, EXPORTS
from .circuit_results import Circuit
from .circuits import DEFAULT_TOP
from .concepts import DEFAULT_BY
from .core.experiment import ClampRequest, Experiment
from .core.loading.modelinfo import ModelInfo, inspect_model
from .core.loading.provenance import provenance
from .core.loading.sources import Source, resolve
from .core.options import check_device_name, check_dtype
from .decoding import models
from .errors import UsageError
from .neuron import Neuron
from .results import CachedModel, ClampReport, Records, as_ref, tqdm_progress

Note = Callable[[str], None]
Progress = Callable[[int, int], None]
ProgressFactory = Callable[[str], "tuple[Progress, Callable[[], None]]"]  # label -> (update, close)


class Model:
    """A model and its decode cache. ``neuroscope.open(MODEL)`` makes one; nothing is loaded until needed.
    Long methods are plain functions of neuroscope.decoding, .weights, .searching, .concepts, .behaviour,
    .clamping, .comparing and .export."""

    typed: str | None = None  # the MODEL as the user typed it (neuroscope.open sets it), for hints

    def __init__(
        self,
        source: Source,
        cache_dir=None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        progress: bool | ProgressFactory = True,
        note: Note | None = None,
    ):
        self.source = source
        self.cache_dir, self.device, self.dtype = cache_dir, check_device_name(device), check_dtype(dtype)
        self.trust_remote_code = trust_remote_code
        self.progress = progress
        self.note = note or (lambda _msg: None)
        self._info: ModelInfo | None = None
        self._lm = None
        self._tokenizer = None
        self._lm_lock = threading.Lock()
        self._provenance: dict | None = None

    def __repr__(self) -> str:
        return f"<neuroscope.Model {self.name} ({self.source.source})>"

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def provenance(self) -> dict:
        """``{"hub_id", "revision"}``, each None when unknown (core.loading.sources.provenance); every command's JSON
        carries them."""
        if self._provenance is None:
            self._provenance = provenance(self.source)
        return dict(self._provenance)

    @property
    def path(self):
        """The model's cache file (it may not exist yet)."""
        return cache_path(self.source.name, self.source.source, self.source.fingerprint, self.cache_dir)

    @property
    def info(self) -> ModelInfo:
        """Architecture, shape, views and context from the model's headers (read once, no weights)."""
        if self._info is None:
            self._info = inspect_model(self.source)
        return self._info

    @property
    def views(self) -> tuple[str, ...]:
        return decoding.views(self)  # the cache's when it is there, else the headers'

    # -- the cache ---------------------------------------------------------------------------------
    def _cached_store(self) -> Store | None:
        """The cache read-only when it is usable (a corrupt one raises CorruptCache: never replaced here)."""
        return decoding.cached_store(self.path)

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

    def is_decoded(self, views: Sequence[str] | None = None) -> bool:
        from .core.pipeline import cached_views

        return cached_views(self.path, list(views or []), 1, self.dtype) is not None

    def decode(
        self,
        views: Sequence[str] | None = None,
        top_k: int = DEFAULT_TOP_K,
        rebuild: bool = False,
        devices: Sequence[str] | None = None,
        cancel: threading.Event | None = None,
        on_unit: Callable[[int, str], None] | None = None,
        announce: bool = True,
    ):
        """Decode every neuron of ``views`` (default: all the model has), both directions, into the cache;
        resumes an interrupted decode, returns at once when everything is there. ``cancel`` (an Event) stops
        it between chunks (finished units are kept; neuroscope.errors.Cancelled is raised). Returns a
        DecodeResult."""
        return decoding.decode(self, views, top_k, rebuild, devices, cancel, on_unit, announce)

    def _progress(self, what: str = "decode"):
        if callable(self.progress):
            return self.progress(f"{what} {self.name}")
        if self.progress:
            return tqdm_progress(f"{what} {self.name}")
        return None, lambda: None

    def store(self, view: str | None = None, check: Callable[[int, int], object] | None = None) -> Store:
        """The cache, read-only, decoding first when it lacks ``view`` (or any view). ``check(layers,
        neurons)`` validates what the caller asks for: against the cache when it is there, else against the
        model's headers, before any decode starts. Use it in a ``with`` block."""
        return decoding.open_store(self, view, check)

    # -- reading -----------------------------------------------------------------------------------
    def neuron(self, ref) -> Neuron:
        """One neuron: ``model.neuron("L29:N808")`` (or "29:808", or (29, 808)); BadNeuronRef here for one
        the model does not have (checked against the cache, else the headers: nothing is loaded)."""
        ref = as_ref(ref)
        self.check_shape(ref.check)
        return Neuron(self, ref)

    def circuit(self, ref, top: int = DEFAULT_TOP, via: str | None = None) -> Circuit:
        """A neuron's circuit from the weights alone (upstream, downstream, input tokens; highest |weight| first;
        ``via`` "gate" or "up" only); the graph is built into the cache on first use (neuroscope.circuits)."""
        from .circuits import circuit

        return Circuit.of(circuit(self, as_ref(ref), top, via), self.provenance)

    def head(self, ref):
        """``model.head("L5:H3")``: what a head's top OV directions write and read (neuroscope.heads.Head)."""
        from .heads import head

        return head(self, ref)

    def search(
        self,
        text: str,
        view: str | None = None,
        direction: str | None = None,
        max_rank: int = 1,
        match: str = "word",
        limit: int | None = 50,
    ) -> Records:
        """Neurons whose top ``max_rank`` tokens match ``text`` (Hit: layer, neuron, view, direction, rank,
        token_id, token, prob), highest probability first. ``match``: word (the word's forms, case,
        leading spaces, plurals folded, and its leading pieces: " Californ" for "California"), exact,
        prefix, contains, or label (neurons whose concept label is ``text``'s concept, highest label mass
        first). Every hit carries its neuron's label."""
        from .searching import search_neurons

        return search_neurons(self, text, view, direction, max_rank, match, limit)

    def match_word(self, text: str):
        """Which tokens of the vocabulary stand for the word ``text`` (its forms and leading pieces, the rule
        in neuroscope.cache.words), with a note when it was matched otherwise (``WordMatch``)."""
        from .searching import match_word

        return match_word(self, text)

    # -- clamping ----------------------------------------------------------------------------------
    def tokenizer(self):
        """The model's tokenizer alone (loaded once; prompts are checked with it before the model loads)."""
        return weights.tokenizer(self)

    def loaded(self):
        """The whole model and tokenizer (loaded once, on first use, on ``device``)."""
        return weights.loaded(self)

    def experiment(
        self,
        clamps,
        prompt: str | None = None,
        target: str | None = None,
        chat: bool | None = None,
        samples: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        mode: str | None = None,
        positions: str | None = None,
        preset: str | None = None,
        concept: str | None = None,
        strength: float | None = None,
        min_mass: float | None = None,
    ) -> Experiment:
        """A checked Experiment (everything the headers can tell is checked; nothing is loaded). ``concept``
        adds a clamp for every neuron labelled with it (concepts.concept_clamps). A setting left None is the
        preset's when ``preset`` names one, else the default (40 new tokens, greedy, seed 0, mode set, all
        positions); ``mode`` given with a preset applies to its clamps too."""
        return clamping.experiment(self, ClampRequest.of(locals()))  # the arguments are its fields

    def clamp(
        self,
        clamps,
        prompt: str | None = None,
        target: str | None = None,
        chat: bool | None = None,
        samples: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        mode: str | None = None,
        positions: str | None = None,
        preset: str | None = None,
        on_text: Callable[[str, str], None] | None = None,
        cancel: threading.Event | None = None,
        concept: str | None = None,
        strength: float | None = None,
        min_mass: float | None = None,
    ):
        """Generate baseline and clamped replies to ``prompt`` and measure p(target). ``clamps``:
        {"L29:N808": 20, ...}, a list of "L29:N808=20" strings or Clamp objects; ``concept`` adds every neuron
        labelled with it. Returns a ClampReport (``as_dict()`` is the CLI's --json)."""
        exp = clamping.experiment(self, ClampRequest.of(locals()))  # Model.experiment's, on_text aside
        return self.run(exp, self.prepare(exp), on_text, cancel)

    def prepare(self, exp: Experiment):
        """The experiment's prompt, tokenized with the tokenizer alone and checked against the context
        (the model is not loaded yet)."""
        return clamping.prepare(self, exp)

    def run(
        self,
        exp: Experiment,
        prepared,
        on_text: Callable[[str, str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ClampReport:
        """Run a checked experiment on its prepared prompt (loads the model on first use)."""
        return clamping.run(self, exp, prepared, on_text, cancel)

    def activations(self, prompt: str, refs, chat: bool | None = None) -> Records:
        """The natural (unclamped) activation of each neuron over the prompt's tokens: Activation(ref, min,
        max, last). ``chat`` None: through the chat template when the model has one."""
        from .behaviour import activations

        return activations(self, prompt, refs, chat)

    # -- behaviour (neuroscope.behaviour) -----------------------------------------------------------
    def trace(self, prompt: str, chat: bool = False, top: int = 10, neurons=None):
        """One forward pass with hooks: each token's top neurons by |activation| (labelled, with GLU cases),
        and ``neurons``' activation at every token (a core.activations.Trace)."""
        from .behaviour import trace

        return trace(self, prompt, chat, top, neurons)

    def attribute(self, prompt: str, ref, at: int | None = None, top: int = 20, chat: bool = False):
        """``ref``'s read pre-activations at token ``at`` of ``prompt`` split exactly into their sources (an
        Attribution: ``as_dict()``, ``to_pandas()``; neuroscope.attribution)."""
        from .attribution import attribute

        return attribute(self, prompt, ref, at, top, chat)

    def examples(
        self,
        corpus=None,
        tokens: int = 100_000,
        per_neuron: int = 20,
        window: int | None = None,
        batch: int = 8,
        rebuild: bool = False,
        cancel: threading.Event | None = None,
        commit_s: float = 30.0,
        text_column: str | None = None,
    ):
        """Every neuron's top ``per_neuron`` examples by activation, each sign, over the first ``tokens`` tokens
        of ``corpus`` (default: the King James Bible; or a .txt file, a folder of text files, a .jsonl/
        .parquet/.csv file's ``text_column`` (default "text"), a ``save_to_disk`` folder, a Hugging Face
        dataset "name[:config][@split]") in rows of ``window`` tokens (default 128, or the model's context
        where shorter); committed every ``commit_s`` seconds, so resumable; cached (an ExamplesResult)."""
        from .behaviour import examples

        return examples(self, corpus, tokens, per_neuron, window, batch, rebuild, cancel, commit_s, text_column)

    def agreement(self, seed: int = 0):
        """How often the decode names what neurons respond to, per view and layer (core.agreement)."""
        from .behaviour import agreement

        return agreement(self, seed)

    # -- concepts (neuroscope.concepts, neuroscope.export) -------------------------------------------
    def top(
        self,
        by: str = DEFAULT_BY,
        view: str | None = None,
        layer: int | None = None,
        limit: int = 20,
        direction: str | None = None,
        min_mass: float = 0.0,
    ) -> Records:
        """The most specialised neurons: by score (default: label mass x the specificity of the label's word,
        so content words come first), label mass, top-1 prob, entropy (lowest), copy, suppression, or cosine
        (read row against down column; measured from the weights on first use); ``min_mass``: only labels
        holding at least this much of their neuron's top-k mass."""
        from .concepts import top_neurons

        return top_neurons(self, by, view, layer, limit, direction, min_mass)

    def concept(self, word: str, views=None) -> Records:
        """Every neuron labelled ``word`` in any view and direction, with the sign that pushes it out."""
        from .concepts import concept_neurons

        return concept_neurons(self, word, views)

    def export(self, fmt: str = "jsonl", out=None, views=None, workers: int | None = 1, what: str = "neurons") -> int:
        """Every neuron-direction's top-k with its label, as jsonl, csv or parquet, to ``out`` (a path; None:
        stdout for jsonl and csv). Returns the row count; a failed export leaves no partial file.
        ``workers``: processes formatting jsonl/csv (None: one per core for large exports; spawned, so a plain
        script needs ``if __name__ == "__main__":``). ``what="edges"``: the circuit graph, one row per edge."""
        if what not in EXPORTS:
            raise UsageError(f"unknown export {what!r}: choose {', '.join(EXPORTS)}")
        if what == "edges":
            from .export_edges import export_model_edges

            return export_model_edges(self, fmt, out, views)
        from .export import export_model

        return export_model(self, fmt, out, views, workers)

    def compare(self, other: "Model | str", view: str = "up", direction: str = "pos", top: int = 50):
        return compare(self, other, view=view, direction=direction, top=top)


def open(
    model: str,
    cache_dir=None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    progress: bool | ProgressFactory = True,
    note: Note | None = None,
) -> Model:
    """A model by name: ``demo``, a Hugging Face folder, a .gguf file or a hub id. Nothing is loaded or
    decoded until needed; a name that names nothing fails here (ModelNotFound)."""
    opened = Model(resolve(model), cache_dir, device, dtype, trust_remote_code, progress, note)
    opened.typed = model
    return opened


def _model(value, **kwargs) -> Model:
    return value if isinstance(value, Model) else open(value, **kwargs)


def compare(
    base: "Model | str", other: "Model | str", view: str = "up", direction: str = "pos", top: int = 50, **open_kwargs
):
    """Base vs fine-tune: same-top-1 fraction per layer, mean top-k Jaccard, the ``top`` most-changed neurons
    with weight cosines (a core.compare.Comparison). Both are decoded first when they are not cached."""
    return comparing.compare_models(_model(base, **open_kwargs), _model(other, **open_kwargs), view, direction, top)


__all__ = ["ClampReport", "CachedModel", "Hit", "Model", "Neuron", "Records", "TopToken", "compare", "models", "open"]
