"""Baseline vs clamped generation: prompts (chat template or plain), greedy or seeded sampling,
streaming through a callback, cancellation through a threading.Event (a StoppingCriteria)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..errors import GenerationError
from .clamp import FORWARD_LOCK, ClampSet, clamped
from .experiment import MAX_NEW_TOKENS, MAX_SAMPLES, GenSettings  # noqa: F401 - re-exported

OnText = Callable[[str], None]


@dataclass
class Prompt:
    text: str  # what the model sees (after the chat template, when applied)
    ids: torch.Tensor  # [1, T] on the model's device

    @property
    def length(self) -> int:
        return self.ids.shape[1]


@dataclass
class Generation:
    texts: list[str] = field(default_factory=list)
    new_tokens: int = 0
    cancelled: bool = False
    ids: list[list[int]] = field(default_factory=list)  # each reply's tokens, up to and with its end token

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


@dataclass
class Tokenized:
    """What building a prompt needs: the tokenizer (and the model's name), before the model is loaded."""

    source: object
    tokenizer: object
    model: object = None


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def on_model(lm, ids: torch.Tensor) -> torch.Tensor:
    """Token ids on the model's device (a prompt may be built before the model is loaded)."""
    device = model_device(lm.model)
    return ids if ids.device == device else ids.to(device)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(lm, prompt: str, chat: bool) -> Prompt:
    """Tokenize the prompt, through the chat template when ``chat``; one-line errors for bad input."""
    if prompt is None or not prompt.strip():
        raise GenerationError("the prompt is empty: give --prompt TEXT")
    tok = lm.tokenizer
    if chat:
        if not has_chat_template(tok):
            raise GenerationError(
                f"{lm.source.name} has no chat template: drop --chat and write the prompt out in full"
            )
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    else:
        text = prompt
        ids = tok(text, return_tensors="pt")["input_ids"]
    if ids.shape[1] == 0:
        raise GenerationError("the prompt has no tokens")
    return Prompt(text, ids if getattr(lm, "model", None) is None else on_model(lm, ids))


class CancelCriteria(StoppingCriteria):
    """Stops generation (every sequence) as soon as ``event`` is set; tells ``on_step`` how many tokens each
    sequence has after every step (a progress bar; an exception it raises, Ctrl-C's too, stops the run)."""

    def __init__(self, event: threading.Event | None, on_step: Callable[[int], None] | None = None, start: int = 0):
        self.event, self.on_step, self.start = event, on_step, start

    def __call__(self, input_ids, scores, **kwargs):
        if self.on_step is not None:
            self.on_step(input_ids.shape[1] - self.start)
        stop = self.event is not None and self.event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class CallbackStreamer(BaseStreamer):
    """Decodes the new tokens as they come and hands each new piece of text to ``on_text``."""

    def __init__(self, tokenizer, on_text: OnText):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half a multi-byte character: wait for the rest
            return
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.on_text(text[len(self.sent) :])
            self.sent = text

    def end(self):
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.on_text(text[len(self.sent) :])
        self.sent = text


def generation_config(lm, settings: GenSettings, num: int = 1) -> GenerationConfig:
    """An explicit config (the model's own sampling defaults do not leak in): greedy, or temperature +
    top-p sampling with no top-k."""
    cfg = lm.model.config
    eos = getattr(lm.tokenizer, "eos_token_id", None)
    eos = eos if eos is not None else getattr(cfg, "eos_token_id", None)
    pad = getattr(lm.tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)
    kwargs = dict(
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
        num_return_sequences=num,
        use_cache=True,
    )
    if settings.sampling:
        assert settings.temperature is not None  # sampling: a temperature above 0
        kwargs.update(
            do_sample=True,
            temperature=float(settings.temperature),
            top_k=0,
            top_p=float(settings.top_p) if settings.top_p is not None else 1.0,
        )
    else:
        kwargs.update(do_sample=False)
    return GenerationConfig(**kwargs)


def generate(
    lm,
    prompt: Prompt,
    settings: GenSettings,
    clamps: ClampSet | None = None,
    num: int = 1,
    on_text: OnText | None = None,
    cancel: threading.Event | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Generation:
    """Generate ``num`` replies (``num`` > 1 needs sampling) with the clamps installed; streaming only
    for a single reply; ``on_step(tokens so far per reply)`` after every step. The RNG is seeded from
    ``settings.seed`` so baseline and clamped runs draw the same random numbers."""
    streamer = CallbackStreamer(lm.tokenizer, on_text) if on_text is not None and num == 1 else None
    config = generation_config(lm, settings, num)
    ids = on_model(lm, prompt.ids)
    mask = torch.ones_like(ids)
    with FORWARD_LOCK, clamped(lm.adapter, clamps, prompt.length), torch.inference_mode():
        if settings.sampling:
            torch.manual_seed(settings.seed)
        stop = StoppingCriteriaList([CancelCriteria(cancel, on_step, prompt.length)])
        out = lm.model.generate(
            input_ids=ids, attention_mask=mask, generation_config=config, streamer=streamer, stopping_criteria=stop
        )
    new = out[:, prompt.length :]
    texts = [lm.tokenizer.decode(row, skip_special_tokens=True) for row in new]
    return Generation(
        texts,
        int(new.shape[1]),
        bool(cancel is not None and cancel.is_set()),
        [_reply(row.tolist(), config.eos_token_id) for row in new],
    )


def _reply(row: list[int], eos) -> list[int]:
    """A generated row up to and with its first end token (what follows is padding)."""
    ends = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    for i, token in enumerate(row):
        if token in ends:
            return row[: i + 1]
    return row


def fluency(
    lm, prompt: Prompt, replies: list[list[int]], on_reply: Callable[[int], None] | None = None
) -> float | None:
    """Mean log-probability per token (nats) of the replies after the prompt under the model as it is (no
    clamps installed), pooled over every reply token; ``on_reply(replies scored so far)`` after each."""
    total, count = 0.0, 0
    with FORWARD_LOCK, torch.inference_mode():
        for done, reply in enumerate(replies):
            if on_reply is not None and done:
                on_reply(done)
            if not reply:
                continue
            ids = torch.cat([prompt.ids.cpu(), torch.tensor([reply])], dim=1)
            logits = lm.model(input_ids=on_model(lm, ids), use_cache=False).logits[0].float()
            logp = torch.log_softmax(logits[prompt.length - 1 : -1], dim=-1)
            total += float(logp.gather(1, torch.tensor(reply, device=logp.device)[:, None]).sum())
            count += len(reply)
    if on_reply is not None:
        on_reply(len(replies))
    return total / count if count else None


def next_token_probs(lm, prompt: Prompt, clamps: ClampSet | None = None) -> torch.Tensor:
    """Softmax over the vocabulary of the next token after the prompt (float32, on the CPU)."""
    with FORWARD_LOCK, clamped(lm.adapter, clamps, prompt.length), torch.inference_mode():
        logits = lm.model(input_ids=on_model(lm, prompt.ids), use_cache=False).logits[0, -1]
    return torch.softmax(logits.float(), dim=-1).cpu()
