"""Tiny random models built from configs and saved with save_pretrained, so the real loading path runs.

Every model gets a WordLevel tokenizer whose vocabulary holds a few known words ("dog", "Dog", "Ġdog",
"doghouse", "hotdog") among filler tokens, and unit-scale random weights (so softmaxes are peaked
enough for top-k to be meaningful). The Llama model has a planted neuron: L1:N7's up row is the
unembedding row of "Ġdog", scaled, so it must decode to that token top-1.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

VOCAB = 384
WORDS = ["<unk>", "<eos>", "dog", "Dog", "\u0120dog", "doghouse", "hotdog", "cat", "\u0120cat"]
PLANTED = (1, 7)  # L1:N7, view up, direction pos
PLANTED_TOKEN = "\u0120dog"


def vocab(size: int = VOCAB) -> list[str]:
    return WORDS + [f"t{i}" for i in range(size - len(WORDS))]


def save_tokenizer(path: Path, size: int = VOCAB) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab(size))}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(path)


def randomize(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln" in name:
                # gains in [0.5, 1.5] and non-zero biases, so the final norm really matters
                p.copy_(
                    (torch.rand(p.shape, generator=gen) + 0.5)
                    if name.endswith("weight")
                    else torch.randn(p.shape, generator=gen) * 0.3
                )
            else:
                p.copy_(torch.randn(p.shape, generator=gen))


def build(kind: str, path: Path, seed: int = 0) -> Path:
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        OPTConfig,
        OPTForCausalLM,
    )

    torch.manual_seed(seed)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            eos_token_id=1,
            bos_token_id=1,
            pad_token_id=0,
        )
        model = LlamaForCausalLM(config)
    elif kind == "gpt2":
        config = GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, eos_token_id=1, bos_token_id=1
        )
        model = GPT2LMHeadModel(config)
    elif kind == "neox":
        config = GPTNeoXConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            eos_token_id=1,
            bos_token_id=1,
        )
        model = GPTNeoXForCausalLM(config)
    elif kind in ("olmo", "qwen2"):
        from transformers import OlmoConfig, OlmoForCausalLM, Qwen2Config, Qwen2ForCausalLM

        config_cls, model_cls = (OlmoConfig, OlmoForCausalLM) if kind == "olmo" else (Qwen2Config, Qwen2ForCausalLM)
        config = config_cls(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            max_position_embeddings=256,
            eos_token_id=1,
            bos_token_id=1,
            pad_token_id=0,
        )
        model = model_cls(config)
    elif kind == "opt":  # an architecture neuroscope does not support
        config = OPTConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=64,
        )
        model = OPTForCausalLM(config)
    else:
        raise ValueError(kind)
    randomize(model, seed)
    if kind == "llama":
        with torch.no_grad():
            layer, neuron = PLANTED
            dog = vocab().index(PLANTED_TOKEN)
            model.model.layers[layer].mlp.up_proj.weight[neuron] = model.lm_head.weight[dog] * 3
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    return path


CLAMP_PLANTED = (1, 5)  # L1:N5: its down column writes "dog" (what clamping must show)
CLAMP_WORD = "dog"


def build_clamp_llama(path: Path, seed: int = 1, scale: float = 5.0) -> Path:
    """A tiny Llama (float32) whose neuron L1:N5 writes the unembedding row of "dog" into the residual
    stream: clamping it high must raise p("dog"). The head is scaled down so that baseline next-token
    distributions are broad (p("dog") small but not vanishing)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        max_position_embeddings=256,
        eos_token_id=1,
        bos_token_id=1,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config)
    randomize(model, seed)
    with torch.no_grad():
        for layer in model.model.layers:  # unit-scale MLPs stay well-behaved at 32 wide
            layer.mlp.down_proj.weight.mul_(0.1)
        model.lm_head.weight.mul_(0.3)
        layer, neuron = CLAMP_PLANTED
        dog = vocab().index(CLAMP_WORD)
        model.model.layers[layer].mlp.down_proj.weight[:, neuron] = model.lm_head.weight[dog] * scale
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    return path


def build_slow_llama(path: Path, layers: int = 4, neurons: int = 1024, vocab_size: int = 16000) -> Path:
    """A Llama whose decode takes a few seconds (12 units of 1,024 neurons x 16,000 tokens), so that a test
    can interrupt it at random moments."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=neurons,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        eos_token_id=1,
        bos_token_id=1,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config)
    randomize(model, 5)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path, vocab_size)
    return path


FIRING = (0, 9)  # L0:N9 fires on "dog" (case ++) and, negatively, on "cat" (case +-)


def firing_corpus(path: Path, tokens: int, seed: int, share: float) -> Path:
    """A corpus for the firing Llama: filler tokens t20-t299, with "dog" or "cat" at about ``share`` of the
    places (seeded, so every run reads the same text)."""
    rng = random.Random(seed)
    words = [f"t{i}" for i in range(20, 300)]
    path.write_text(
        " ".join(rng.choice(words) if rng.random() > share else rng.choice(["dog", "cat"]) for _ in range(tokens))
    )
    return path


def build_firing_llama(path: Path, scale: float = 4.0) -> Path:
    """A tiny Llama with a neuron whose behaviour is known: layer 0's attention is muted, so its MLP sees
    the token's own normalised embedding; L0:N9's gate row reads dog + cat and its up row dog - cat, so on
    "dog" both are positive (a large positive activation, case ++) and on "cat" the gate is open and up is
    negative (a large negative activation, case +-)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(6)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        max_position_embeddings=256,
        eos_token_id=1,
        bos_token_id=1,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config)
    randomize(model, 6)
    with torch.no_grad():
        first = model.model.layers[0]
        first.self_attn.o_proj.weight.mul_(0.01)
        first.post_attention_layernorm.weight.fill_(1.0)
        first.mlp.gate_proj.weight.mul_(0.1)
        first.mlp.up_proj.weight.mul_(0.1)
        emb = model.model.embed_tokens.weight
        unit = {w: emb[vocab().index(w)] / emb[vocab().index(w)].pow(2).mean().sqrt() for w in ("dog", "cat")}
        layer, neuron = FIRING
        mlp = model.model.layers[layer].mlp
        mlp.gate_proj.weight[neuron] = (unit["dog"] + unit["cat"]) * scale / 32
        mlp.up_proj.weight[neuron] = (unit["dog"] - unit["cat"]) * scale / 32
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    return path


CONCEPT_NEURONS = {(1, 11, "up", "pos"): +1, (0, 20, "down", "neg"): -1, (1, 30, "gate", "pos"): +1}
DOG_FORMS = ("dog", "Dog", "\u0120dog")


def build_concept_llama(path: Path, scale: float = 2.0) -> Path:
    """A tiny Llama with three planted "dog" neurons, one per view: L1:N11's up row and L1:N30's gate row are
    the sum of the unembedding rows of "dog", "Dog" and "Ġdog" (they decode to all three in the pos
    direction), L0:N20's down column is minus that sum (the three in the neg direction)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(8)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        eos_token_id=1,
        bos_token_id=1,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config)
    randomize(model, 8)
    with torch.no_grad():
        head = model.lm_head.weight
        dog = sum(head[vocab().index(w)] for w in DOG_FORMS) * scale
        model.model.layers[1].mlp.up_proj.weight[11] = dog
        model.model.layers[1].mlp.gate_proj.weight[30] = dog
        model.model.layers[0].mlp.down_proj.weight[:, 20] = -dog
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    return path
