"""PyTorch engine for LLM rerankers (``rerankpool.models.llm``): the last token's yes/no logits only.

A causal LM scores a pair from the next-token logits at the last token of its prompt. The
engine runs the decoder body on right-padded chunks (the pool's usual length-sorted
chunks), takes each row's hidden state at its last real token, and multiplies it by the
one or two rows of the output projection the score needs ("yes", and "no" where the
score is their difference): an [n, hidden] x [hidden, 2] product, never the
[tokens, vocabulary] projection of a ``...ForCausalLM`` forward pass.

Right padding needs no attention mask: a pair's tokens come first in its row and causal
attention never looks ahead, so the pads after them change nothing (the model card pads
on the left instead, with a mask; RoPE depends on positions only through their
differences, so both give the same logits). ``--engine torch`` picks this engine for a
checkpoint whose config.json is a causal LM (``rerankpool.worker.engines.load_engine``).
"""

from __future__ import annotations

import logging

import numpy as np

from rerankpool.worker.engines.base import Chunk, Engine, EngineConfig, EngineLoadError, PackedChunk

logger = logging.getLogger(__name__)


class LlmEngine(Engine):
    """An LLM reranker on one device; padded chunks (``packed`` stays False)."""

    name = "torch"

    def __init__(self, config: EngineConfig) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModelForCausalLM

        from rerankpool.models.llm import llm_reranker
        from rerankpool.worker.engines.torch_engine import load_pretrained

        if config.packed:
            raise EngineLoadError("--packed: LLM rerankers run padded chunks here; run without --packed")
        try:
            reranker = llm_reranker(config.model_path)
        except ValueError as exc:
            raise EngineLoadError(str(exc)) from exc
        if reranker is None:
            raise EngineLoadError(f"{config.model_path} is not a causal LM; its config.json names no ...ForCausalLM")
        self.dtype = config.dtype
        self._torch = torch
        model, self.device = load_pretrained(AutoModelForCausalLM, config, "an LLM reranker",
                                             attn_implementation="sdpa")
        self.model = model
        self.body = getattr(model, model.base_model_prefix)  # the decoder, without the vocabulary projection
        yes, no = reranker.template.head_ids(Tokenizer.from_file(str(config.model_path / "tokenizer.json")))
        rows = [yes] if no is None else [yes, no]
        lm_head = model.get_output_embeddings()
        with torch.no_grad():  # the only rows of the output projection ever used, in fp32
            self.head = lm_head.weight[rows].detach().float().clone()
            bias = getattr(lm_head, "bias", None)
            self.head_bias = None if bias is None else bias[rows].detach().float().clone()
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and config.max_length > limit:
            logger.warning("--max-length %d is past the model's %d positions", config.max_length, limit)
        if config.compile:
            self.body = torch.compile(self.body, dynamic=True)
        score = f"logit({reranker.template.yes!r})" + ("" if no is None else f" - logit({reranker.template.no!r})")
        logger.info("torch engine: LLM reranker %s (%s) on %s (%s), score = %s", config.model_path,
                    reranker.template.family, self.device, self.dtype, score)

    def forward(self, chunk: Chunk | PackedChunk) -> np.ndarray:
        """Each row's score from the logits at its last real token (rows are right-padded)."""
        if isinstance(chunk, PackedChunk):
            raise TypeError("the LLM engine takes padded chunks (it declares packed=False)")
        torch = self._torch
        with torch.inference_mode():
            ids = torch.from_numpy(chunk.input_ids).to(self.device, non_blocking=True)
            last = torch.from_numpy(chunk.attention_mask.sum(axis=1) - 1).to(self.device, non_blocking=True)
            hidden = self.body(input_ids=ids, use_cache=False).last_hidden_state  # [n, length, hidden]
            logits = hidden[torch.arange(len(last), device=self.device), last].float() @ self.head.T  # [n, 1 or 2]
            if self.head_bias is not None:
                logits = logits + self.head_bias
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            scores = logits[:, 0] - logits[:, 1] if logits.shape[1] == 2 else logits[:, 0]
            return scores.cpu().numpy()

    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        for rows, length in shapes:
            ids = np.ones((rows, length), dtype=np.int64)
            self.forward(Chunk(np.arange(rows), ids, ids, np.zeros_like(ids)))

    def memory(self) -> dict[str, float]:
        if not self.device.startswith("cuda"):
            return {}
        return {"torch_cuda_allocated_mb": self._torch.cuda.memory_allocated(self.device) / 2**20,
                "torch_cuda_reserved_mb": self._torch.cuda.memory_reserved(self.device) / 2**20}
