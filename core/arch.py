"""The one registry of architecture families. Torch-free.

Everything neuroscope knows about an architecture lives in its :class:`Family` entry: which config
``model_type`` values and GGUF architectures it covers, where the MLP, its views, the final norm and
the LM head sit in the transformers module tree (and so in safetensors names), the GGUF tensor names,
the config keys of its shape, and its activation and norm kinds. Loading (core.loading.models), streaming
(core.loading.streaming), the GGUF reader (core.loading.gguf_fast), compare's weight reader, clamping and the cheap
pre-load checks (core.inspect) all read it from here.

Adding a family is one entry below plus a fixture model in tests/models.py (see README, Development).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..choices import VIEWS
from ..errors import DamagedModel, UnsupportedModel


@dataclass(frozen=True)
class GGUFLayout:
    """How llama.cpp's converter (convert_hf_to_gguf.py) writes a family into a GGUF file, and the transformers
    skeleton the decode-only reader (core.loading.gguf_fast) builds on the meta device to hold what it reads.
    The tensor names are llama.cpp's standard ones (gguf's TensorNameMap): the defaults fit every family
    below."""

    archs: dict[str, str]  # GGUF general.architecture -> transformers model_type of the skeleton
    ffn: dict[str, str] = field(default_factory=lambda: dict(GGUF_FFN))  # view -> tensor name ({i} = layer)
    norm: str = "output_norm.weight"  # the final norm's gain
    head: str = "output.weight"  # the LM head; the converter leaves it out when it is tied ...
    embed: str = "token_embd.weight"  # ... to the token embedding, which then serves as the head
    # what the converter adds to every norm gain: Gemma's RMSNorm scales by (1 + w), and llama.cpp stores
    # 1 + w so that its plain RMSNorm works. The reader subtracts it before the gain goes into the
    # skeleton's own norm module (which adds the 1 back), exactly as transformers' Gemma2TensorProcessor
    # does when it loads a Gemma GGUF (transformers/modeling_gguf_pytorch_utils.py).
    norm_shift: float = 0.0
    mlp_norm: str = "blk.{i}.ffn_norm.weight"  # the gain of the norm in front of layer {i}'s MLP (circuits)
    # attention heads (core.circuits.heads): the gain in front of attention, the value and output projections
    attn_norm: str = "blk.{i}.attn_norm.weight"
    attn_v: str = "blk.{i}.attn_v.weight"
    attn_output: str = "blk.{i}.attn_output.weight"
    metadata: dict[str, str] = field(default_factory=dict)  # more "<arch>.KEY" metadata -> config key


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json "model_type" values this entry covers
    base: str  # attribute of the causal LM holding the decoder stack
    blocks: str  # attribute of the decoder holding the list of layers
    modules: dict[str, str]  # view -> attribute of a layer's MLP module
    layouts: dict[str, str]  # view -> "rows" (weight[i] is neuron i) or "cols" (weight[:, i])
    final_norm: str  # attribute of the decoder holding the final norm
    norm_kind: str  # "rms" or "layer"
    activation_key: str  # config key naming the activation function
    embed: str = "embed_tokens"  # attribute of the decoder holding the input embedding
    head: str = "lm_head"  # attribute of the causal LM holding the LM head
    mlp: str = "mlp"  # attribute of a layer holding its MLP
    layer_keys: tuple[str, ...] = ("num_hidden_layers",)
    neuron_keys: tuple[str, ...] = ("intermediate_size",)
    hidden_keys: tuple[str, ...] = ("hidden_size",)
    context_keys: tuple[str, ...] = ("max_position_embeddings",)
    default_neurons_per_hidden: int | None = None  # GPT-2: n_inner defaults to 4 * n_embd
    head_aliases: dict[str, str] = field(default_factory=dict)  # legacy checkpoint names of the head
    gguf: GGUFLayout | None = None  # GGUF files the decode-only reader takes (None: transformers loads them)
    description: str = ""  # its part of the supported list (entries sharing a layout share one)
    # the norm in front of each layer's MLP (what the virtual weights of core.circuits read through): the first
    # of these attributes a layer has (Gemma2's pre_feedforward_layernorm; Gemma1 has only the second), its kind
    # ("rms", or "layer": a LayerNorm, whose centring the source vector takes first) and what the norm module
    # adds to its weight (Gemma's RMSNorm scales by 1 + w)
    mlp_norms: tuple[str, ...] = ("post_attention_layernorm",)
    mlp_norm_kind: str = "rms"
    norm_shift: float = 0.0
    # attention as exact attribution (core.circuits.attribution) splits it: the attribute of a layer holding its
    # attention module, that module's output projection and its layout ("cols": a Linear, whose input columns
    # h*d:(h+1)*d belong to head h; "rows": GPT-2's Conv1D, whose rows do), the config keys of the head count,
    # the config key saying the MLP reads the block's input in parallel with attention (NeoX), and the norms
    # some blocks put on an output before it joins the residual (Gemma2's post-attention and post-feed-forward
    # norms: linear but for their scale at the token, so the attribution scales each part by it)
    attention: str = "self_attn"
    attn_out: str = "o_proj"
    attn_out_layout: str = "cols"
    head_keys: tuple[str, ...] = ("num_attention_heads",)
    parallel_key: str | None = None
    attn_out_norm: str | None = None
    # attention heads through the decode's lens (core.circuits.heads): the norm in front of attention, the value
    # projection and how its output splits into heads ("rows": a Linear whose rows g*d:(g+1)*d are key-value
    # group g; "gpt2_qkv": GPT-2's Conv1D c_attn, q | k | v along its columns; "neox_qkv": NeoX's Linear,
    # (q, k, v) per head along its rows) and the config keys of the key-value head count (grouped-query attention)
    attn_norm: str = "input_layernorm"
    value: str = "v_proj"
    value_layout: str = "rows"
    kv_head_keys: tuple[str, ...] = ("num_key_value_heads",)
    mlp_out_norm: str | None = None

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(v for v in VIEWS if v in self.modules)

    @property
    def gated(self) -> bool:
        return "gate" in self.modules

    @property
    def down(self) -> str:
        """The MLP attribute whose input is the neuron activation (what clamping and tracing hook)."""
        return self.modules["down"]

    def mlp_path(self, layer: int) -> str:
        """The module path of one layer's MLP inside the causal LM, e.g. ``model.layers.3.mlp``."""
        return f"{self.base}.{self.blocks}.{layer}.{self.mlp}"

    def weight_name(self, layer: int, view: str) -> str:
        """The parameter (and safetensors) name of one layer's view matrix."""
        return f"{self.mlp_path(layer)}.{self.modules[view]}.weight"

    def mlp_norm_attr(self, block) -> str | None:
        """The attribute of ``block`` (one decoder layer) holding the norm in front of its MLP, or None."""
        return next((a for a in self.mlp_norms if getattr(block, a, None) is not None), None)

    def out_norm(self, block, which: str):
        """The norm ``block`` puts on its attention ("attn") or MLP ("mlp") output before the residual, or None.
        Gemma1 has a post_attention_layernorm too, but it is the norm in front of its MLP: not an output norm."""
        attr = self.attn_out_norm if which == "attn" else self.mlp_out_norm
        module = getattr(block, attr, None) if attr else None
        if module is None or (which == "attn" and attr == self.mlp_norm_attr(block)):
            return None
        return module

    def final_norm_path(self) -> str:
        return f"{self.base}.{self.final_norm}"

    def site(self, layer: int, site: str, parallel: bool = False) -> SitePoint | None:
        """Where residual-stream hook site ``site`` (SITES) of ``layer`` sits in this family's module tree; None
        for a site its blocks do not have (``parallel``: attention and the MLP read the block's input side by
        side, as NeoX's use_parallel_residual does, so there is no stream between them: no resid_mid)."""
        block = f"{self.base}.{self.blocks}.{layer}"
        if site in ("resid_pre", "resid_post"):
            return SitePoint(site, (block,), "input" if site == "resid_pre" else "output")
        if site == "resid_mid":  # after attention joined the stream: what the norm in front of the MLP reads
            return None if parallel else SitePoint(site, tuple(f"{block}.{a}" for a in self.mlp_norms), "input")
        if site == "mlp_out":  # what joins the stream from the MLP (after Gemma2's post-feed-forward norm)
            normed = (f"{block}.{self.mlp_out_norm}",) if self.mlp_out_norm else ()
            return SitePoint(site, (*normed, self.mlp_path(layer)), "output")
        return None


SITES = ("resid_pre", "resid_mid", "resid_post", "mlp_out")  # TransformerLens's names, which SAELens hooks use


@dataclass(frozen=True)
class SitePoint:
    """A residual-stream hook site in a family's module tree: the first module of ``modules`` (paths in the causal
    LM, e.g. ``model.layers.3.post_attention_layernorm``) that the loaded model has, at its ``side``: "input"
    (the stream as the module reads it) or "output" (what the module returns)."""

    site: str
    modules: tuple[str, ...]
    side: str

    def __str__(self) -> str:
        return f"{self.side} of {' (else '.join(self.modules)}{')' * (len(self.modules) - 1)}"


GATED = {"up": "up_proj", "gate": "gate_proj", "down": "down_proj"}
GATED_LAYOUTS = {"up": "rows", "gate": "rows", "down": "cols"}
GGUF_FFN: dict[str, str] = {
    "up": "blk.{i}.ffn_up.weight",
    "gate": "blk.{i}.ffn_gate.weight",
    "down": "blk.{i}.ffn_down.weight",
}

LLAMA = Family(
    name="llama",
    model_types=("llama", "mistral"),
    base="model",
    blocks="layers",
    modules=GATED,
    layouts=GATED_LAYOUTS,
    final_norm="norm",
    norm_kind="rms",
    activation_key="hidden_act",
    gguf=GGUFLayout(archs={"llama": "llama"}),
    description="Llama, Mistral, Qwen2/3, Gemma/Gemma2, SmolLM (gate/up/down)",
)
# Qwen2/3 and Gemma/Gemma2 keep Llama's module tree (so safetensors names, streaming and clamping are
# Llama's); their entries differ in what a GGUF file needs: the architecture names, the skeleton class,
# Gemma's norm shift and its logit soft-capping.
QWEN2 = replace(
    LLAMA, name="qwen2", model_types=("qwen2", "qwen3"), gguf=GGUFLayout(archs={"qwen2": "qwen2", "qwen3": "qwen3"})
)
GEMMA = replace(
    LLAMA,
    name="gemma",
    model_types=("gemma", "gemma2"),
    activation_key="hidden_activation",
    mlp_norms=("pre_feedforward_layernorm", "post_attention_layernorm"),
    norm_shift=1.0,
    attn_out_norm="post_attention_layernorm",
    mlp_out_norm="post_feedforward_layernorm",
    gguf=GGUFLayout(
        archs={"gemma": "gemma", "gemma2": "gemma2"},
        norm_shift=1.0,
        metadata={"attention.key_length": "head_dim", "final_logit_softcapping": "final_logit_softcapping"},
    ),
)

FAMILIES: tuple[Family, ...] = (
    LLAMA,
    QWEN2,
    GEMMA,
    Family(
        name="olmo",
        model_types=("olmo",),
        base="model",
        blocks="layers",
        modules=GATED,
        layouts=GATED_LAYOUTS,
        final_norm="norm",
        norm_kind="layer",
        activation_key="hidden_act",
        mlp_norm_kind="layer",
        description="OLMo (gate/up/down; a final LayerNorm without parameters)",
    ),
    Family(
        name="gpt2",
        model_types=("gpt2",),
        base="transformer",
        blocks="h",
        modules={"up": "c_fc", "down": "c_proj"},
        layouts={"up": "cols", "down": "rows"},
        final_norm="ln_f",
        norm_kind="layer",
        activation_key="activation_function",
        embed="wte",
        layer_keys=("n_layer",),
        neuron_keys=("n_inner",),
        hidden_keys=("n_embd",),
        context_keys=("n_positions",),
        default_neurons_per_hidden=4,
        mlp_norms=("ln_2",),
        mlp_norm_kind="layer",
        attention="attn",
        attn_out="c_proj",
        attn_out_layout="rows",
        head_keys=("n_head",),
        attn_norm="ln_1",
        value="c_attn",
        value_layout="gpt2_qkv",
        description="GPT-2 (up/down)",
    ),
    Family(
        name="neox",
        model_types=("gpt_neox",),
        base="gpt_neox",
        blocks="layers",
        modules={"up": "dense_h_to_4h", "down": "dense_4h_to_h"},
        layouts={"up": "rows", "down": "cols"},
        final_norm="final_layer_norm",
        norm_kind="layer",
        activation_key="hidden_act",
        embed="embed_in",
        head_aliases={"lm_head.weight": "embed_out.weight"},
        mlp_norm_kind="layer",
        attention="attention",
        attn_out="dense",
        value="query_key_value",
        value_layout="neox_qkv",
        parallel_key="use_parallel_residual",
        description="GPT-NeoX/Pythia (up/down)",
    ),
)

SUPPORTED = ", ".join(dict.fromkeys(f.description for f in FAMILIES))


def by_model_type(model_type: str | None, where: str = "the model") -> Family:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    shown = f"'{model_type}'" if model_type else "no model_type"
    raise UnsupportedModel(f"unsupported architecture {shown} in {where}; supported: {SUPPORTED}")


def by_gguf_arch(arch: str | None) -> Family | None:
    """The family whose decode-only GGUF reader takes this GGUF architecture, or None."""
    return next((f for f in FAMILIES if f.gguf is not None and arch in f.gguf.archs), None)


def by_weight_names(has) -> Family | None:
    """The family whose MLP tensor names a checkpoint uses (``has(name)`` says whether it holds one)."""
    return next((f for f in FAMILIES if any(has(f.weight_name(0, v)) for v in f.views)), None)


@dataclass(frozen=True)
class Shape:
    """A model's size from its config alone."""

    layers: int
    neurons: int
    hidden: int
    vocab: int
    context: int | None


def _optional_int(cfg: dict, keys: tuple[str, ...], where: str) -> int | None:
    for key in keys:
        value = cfg.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DamagedModel(f"{where}: {key} is {value!r}, not a positive whole number")
        return value
    return None


def _int(cfg: dict, keys: tuple[str, ...], what: str, where: str) -> int:
    value = _optional_int(cfg, keys, where)
    if value is None:
        raise DamagedModel(f"{where} has no {what} ({' or '.join(keys)})")
    return value


def config_shape(family: Family, cfg: dict, where: str) -> Shape:
    """Layers, neurons per layer, hidden size, vocabulary and context length from a config dict."""
    hidden = _int(cfg, family.hidden_keys, "hidden size", where)
    per_hidden = family.default_neurons_per_hidden
    neurons = (
        _int(cfg, family.neuron_keys, "MLP width", where)
        if per_hidden is None
        else _optional_int(cfg, family.neuron_keys, where) or per_hidden * hidden
    )
    return Shape(
        _int(cfg, family.layer_keys, "layer count", where),
        neurons,
        hidden,
        _int(cfg, ("vocab_size",), "vocabulary size", where),
        _optional_int(cfg, family.context_keys, where),
    )


def text_config(cfg: dict) -> dict:
    """The language model's part of a config (multimodal configs nest it under text_config)."""
    inner = cfg.get("text_config")
    return inner if isinstance(inner, dict) and inner.get("model_type") else cfg
