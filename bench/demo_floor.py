"""The floor process for the demo target: import torch + transformers, load the demo model and tokenizer
with transformers, run the bare float32 matmul of every view's neuron vectors against the LM head."""

import time

t0 = time.perf_counter()
import torch  # noqa: E402
import transformers  # noqa: E402

from neuroscope.core.loading.sources import demo_gguf  # noqa: E402  (torch-free: just finds the file)

path = demo_gguf()
transformers.utils.logging.disable_progress_bar()
tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
t1 = time.perf_counter()
head = model.lm_head.weight
with torch.inference_mode():
    for layer in model.model.layers:
        for w in (layer.mlp.up_proj.weight, layer.mlp.gate_proj.weight, layer.mlp.down_proj.weight.t()):
            for start in range(0, w.shape[0], 1024):
                w[start : start + 1024] @ head.t()
print(f"load {t1 - t0:.1f} s, matmuls {time.perf_counter() - t1:.1f} s")
