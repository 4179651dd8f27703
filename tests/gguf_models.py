"""GGUF files of the tiny models (tests/models.py), written as llama.cpp's converter writes them, so that the
decode-only GGUF reader and transformers' GGUF loader both run on real files."""

from __future__ import annotations

from pathlib import Path

import torch

from .models import PLANTED, PLANTED_TOKEN, VOCAB, randomize, save_tokenizer, vocab


def build_gguf(folder: Path, out: Path, repo: str | None = None) -> Path:
    """The tiny Llama of ``folder`` (see build) written as a float32 GGUF file with the `gguf` package's own
    writer: the MLP, final norm, head and embedding tensors, the shape metadata and a gpt2-style token list.
    neuroscope's decode-only GGUF reader must decode it exactly like the safetensors folder. ``repo``: the
    hub repository named in its metadata (general.source.huggingface.repository)."""
    import json

    import numpy as np
    from gguf import GGUFWriter
    from safetensors.numpy import load_file

    cfg = json.loads((folder / "config.json").read_text())
    w = load_file(str(folder / "model.safetensors"))
    writer = GGUFWriter(str(out), "llama")
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_head_count_kv(cfg["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_context_length(cfg["max_position_embeddings"])
    if repo:
        writer.add_string("general.source.huggingface.repository", repo)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(vocab())
    writer.add_token_types([1] * VOCAB)
    writer.add_tensor("token_embd.weight", w["model.embed_tokens.weight"].astype(np.float32))
    writer.add_tensor("output.weight", w["lm_head.weight"].astype(np.float32))
    writer.add_tensor("output_norm.weight", w["model.norm.weight"].astype(np.float32))
    for i in range(cfg["num_hidden_layers"]):
        for view in ("up", "gate", "down"):
            writer.add_tensor(f"blk.{i}.ffn_{view}.weight", w[f"model.layers.{i}.mlp.{view}_proj.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


GGUF_KINDS = ("llama", "qwen2", "qwen3", "gemma", "gemma2")  # the model_types GGUF files are made from


def build_family(kind: str, path: Path, seed: int = 0) -> Path:
    """A tiny model of a family that GGUF files use (core.arch's Llama, Qwen2/3 and Gemma/Gemma2 entries),
    built from transformers' own config class for ``kind``, with the planted neuron: L1:N7's up row is the
    head row of "Ġdog" (the embedding's row when the head is tied, as Gemma's is). Gemma2 caps its logits
    at 10 (its config's default is 30) so a reader that ignores the file's cap shows it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    extra = {"final_logit_softcapping": 10.0} if kind == "gemma2" else {}
    config = AutoConfig.for_model(
        kind,
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=kind.startswith("gemma"),
        max_position_embeddings=256,
        eos_token_id=1,
        bos_token_id=1,
        pad_token_id=0,
        **extra,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    randomize(model, seed)
    with torch.no_grad():
        layer, neuron = PLANTED
        model.model.layers[layer].mlp.up_proj.weight[neuron] = model.lm_head.weight[vocab().index(PLANTED_TOKEN)] * 3
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    return path


def _permute(w, heads: int):
    """llama.cpp's converter reorders Llama's q/k rows for its rotary embedding (LlamaModel.permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(folder: Path, out: Path) -> Path:
    """The model of ``folder`` (see build_family) written as a float32 GGUF file laid out as llama.cpp's
    convert_hf_to_gguf.py lays it out: every tensor under the name gguf's TensorNameMap gives it (Llama's q/k
    rows permuted, Gemma's norm gains stored as 1 + w, no output.weight when the head is tied), the
    "<arch>.*" shape metadata, and the tokenizer in the metadata (a gpt2-style BPE token list; Gemma's is
    SentencePiece, "▁" for a space)."""
    import json

    import numpy as np
    from gguf import MODEL_ARCH_NAMES, GGUFWriter, get_tensor_name_map
    from safetensors.numpy import load_file

    cfg = json.loads((folder / "config.json").read_text())
    arch = cfg["model_type"]
    gemma = arch.startswith("gemma")
    writer = GGUFWriter(str(out), arch)
    writer.add_name(folder.name)
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_head_count_kv(cfg["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_rope_freq_base(float(cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 1e4)))
    writer.add_file_type(0)  # all float32
    writer.add_key_length(cfg["head_dim"])
    writer.add_value_length(cfg["head_dim"])
    if cfg.get("final_logit_softcapping"):
        writer.add_final_logit_softcapping(cfg["final_logit_softcapping"])
        writer.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        writer.add_sliding_window(cfg["sliding_window"])
    writer.add_tokenizer_model("llama" if gemma else "gpt2")
    writer.add_token_list([t.replace("\u0120", "\u2581") for t in vocab()] if gemma else vocab())
    writer.add_token_types([3, 3] + [1] * (VOCAB - 2))  # <unk> and <eos> are control tokens
    if gemma:
        writer.add_token_scores([0.0] * VOCAB)
    writer.add_bos_token_id(cfg["bos_token_id"])
    writer.add_eos_token_id(cfg["eos_token_id"])
    names = get_tensor_name_map(next(a for a, n in MODEL_ARCH_NAMES.items() if n == arch), cfg["num_hidden_layers"])
    for name, w in load_file(str(folder / "model.safetensors")).items():
        w = w.astype(np.float32)
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg["num_attention_heads" if "q_proj" in name else "num_key_value_heads"]
            w = _permute(w, heads)
        if gemma and name.endswith("norm.weight"):
            w = w + 1
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
