"""The side-by-side baseline, in-process on the same pairs: what a user would run by hand.

A cross-encoder: sentence-transformers ``CrossEncoder.predict``. An LLM reranker: its model
card's reference code (``QwenCardReranker``: left padding, the whole ``...ForCausalLM``
forward pass, every logit), since ``CrossEncoder`` cannot load one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rerankpool.bench.results import BaselineResult
from rerankpool.models.llm import llm_reranker

logger = logging.getLogger(__name__)


def _dtype_kwargs(dtype: str) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument, as this transformers names it."""
    import torch
    import transformers

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return {key: getattr(torch, dtype)}


def load_cross_encoder(model_path: Path, device: str = "cpu", max_length: int = 512, dtype: str = "float32"):
    """A CrossEncoder that returns raw logits (Identity activation), like the ms-marco hub configs."""
    import torch
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_path), device=device, max_length=max_length, activation_fn=torch.nn.Identity(),
                        model_kwargs=_dtype_kwargs(dtype))


def load_reference(model_path: Path, device: str = "cpu", max_length: int = 512, dtype: str = "float32"):
    """The baseline for this checkpoint: ``QwenCardReranker`` for an LLM reranker, else ``CrossEncoder``."""
    if llm_reranker(model_path) is not None:
        return QwenCardReranker(model_path, max_length, device, dtype)
    return load_cross_encoder(model_path, device, max_length, dtype)


def run_reference(
    model, pairs: Sequence[tuple[str, str]], batch_size: int = 32, repeats: int = 1
) -> BaselineResult:
    """Time ``model.predict`` over the pairs (median of ``repeats`` runs).

    The pairs go in as given: ``CrossEncoder.predict`` sorts them by length itself
    (sentence-transformers 6.x), so the baseline already pads little; the model card's
    loop does not sort, as its code does not.
    """
    model.predict(list(pairs[:batch_size]), batch_size=batch_size, show_progress_bar=False)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(list(pairs), batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
        times.append(time.perf_counter() - start)
    kind = getattr(model, "reference_name", "CrossEncoder.predict")
    dtype = str(getattr(model, "dtype", getattr(getattr(model, "model", None), "dtype", ""))).replace("torch.", "")
    note = f"in-process, {dtype}, median of {repeats} run(s)"
    return BaselineResult(f"{kind}(batch_size={batch_size})", len(pairs), float(np.median(times)), batch_size, note)


class QwenCardReranker:
    """Qwen3-Reranker's model card code on a checkpoint, as written there; ``max_length`` and the instruction
    (``task``) as the card's variables. The reference the pool's LLM scores must equal, and the loop it is
    timed against."""

    reference_name = "Qwen3-Reranker model card loop"
    prefix = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
              "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

    def __init__(self, path: Path, max_length: int = 8192, device: str = "cpu", dtype: str = "float32") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(str(path), **_dtype_kwargs(dtype)).to(device).eval()
        self.dtype = self.model.dtype
        self.token_false_id = self.tokenizer.convert_tokens_to_ids("no")
        self.token_true_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.max_length = max_length
        self.prefix_tokens = self.tokenizer.encode(self.prefix, add_special_tokens=False)
        self.suffix_tokens = self.tokenizer.encode(self.suffix, add_special_tokens=False)

    @staticmethod
    def format_instruction(instruction, query, doc):
        if instruction is None:
            instruction = "Given a web search query, retrieve relevant passages that answer the query"
        return "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(
            instruction=instruction, query=query, doc=doc)

    def process_inputs(self, pairs):
        inputs = self.tokenizer(pairs, padding=False, truncation="longest_first", return_attention_mask=False,
                                max_length=self.max_length - len(self.prefix_tokens) - len(self.suffix_tokens))
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = self.prefix_tokens + ele + self.suffix_tokens
        inputs = self.tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=self.max_length)
        for key in inputs:
            inputs[key] = inputs[key].to(self.device)
        return inputs

    def compute_logits(self, inputs):
        """The card's ``compute_logits``, returning both log-probabilities: [n, (log p_no, log p_yes)]."""
        torch = self.torch
        with torch.no_grad():
            batch_scores = self.model(**inputs).logits[:, -1, :]
        true_vector = batch_scores[:, self.token_true_id]
        false_vector = batch_scores[:, self.token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        return torch.nn.functional.log_softmax(batch_scores, dim=1)

    def __call__(self, pairs: list[tuple[str, str]], task: str | None = None):
        """(p_yes, log p_yes - log p_no, each pair's unpadded input ids), in pair order."""
        inputs = self.process_inputs([self.format_instruction(task, q, d) for q, d in pairs])
        log_probs = self.compute_logits(inputs).float().cpu().numpy().astype(np.float64)
        ids = [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        return np.exp(log_probs[:, 1]), log_probs[:, 1] - log_probs[:, 0], ids

    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, **_: Any) -> np.ndarray:
        """The log-odds (the pool's raw score) in batches of ``batch_size``, in order, as a user's loop runs
        the card."""
        return np.concatenate([self(list(pairs[i : i + batch_size]))[1] for i in range(0, len(pairs), batch_size)])
