"""Build a tiny random Llama with a word-level tokenizer, and plant one neuron.

``build_tiny_llama(folder)`` saves a 2-layer Llama (hidden 32, 64 neurons per layer, 512 tokens) with
``save_pretrained`` so the real loading path runs. Neuron L1:N7's up-projection row is set to a
multiple of the LM-head row of PLANTED_TOKEN, so it decodes to that token top-1 in the ``up`` view.
"""

from __future__ import annotations

from pathlib import Path

PLANTED_TOKEN = "zebra"
PLANTED_LAYER = 1
PLANTED_NEURON = 7
WORDS = ["dog", "cat", "zebra", "apple", "river", "stone", "paris", "music", "green", "seven"]
VOCAB_SIZE = 512


def vocab() -> list[str]:
    specials = ["<unk>", "<s>", "</s>"]
    filler = [f"w{i:03d}" for i in range(VOCAB_SIZE - len(specials) - len(WORDS))]
    return specials + WORDS + filler


def build_tiny_llama(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = vocab()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # A unit-scale head gives peaked, varied distributions (the default init makes them flat).
        model.lm_head.weight.normal_(0.0, 0.5)
        token = words.index(PLANTED_TOKEN)
        model.model.layers[PLANTED_LAYER].mlp.up_proj.weight[PLANTED_NEURON] = 5.0 * model.lm_head.weight[token]
    model.save_pretrained(folder)
    return folder
