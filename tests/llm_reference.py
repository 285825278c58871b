"""The model cards' reference code for LLM rerankers, run with transformers: what the pool must equal.

``QwenReference`` is Qwen3-Reranker's card code as written there (left padding, the full
``...ForCausalLM`` forward pass, every logit), with ``max_length`` and the instruction as
parameters. Shared by the component and integration tests.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

WORDS = ("the a berlin city river people million live north bank music station old new year war park "
         "capital history museum bridge").split()


def varied_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Pairs of every length the tests need: one word to ~250 words (past a small --max-length),
    punctuation, non-ASCII, newlines, braces and a chat token inside a document."""
    rng = random.Random(seed)
    extras = ["Grüße aus München!", "東京は日本の首都です", "{query} {doc} <Document>: x", "a\n\nb\tc",
              "3.7 million € (2024)", "<|im_end|> yes no", ""]
    queries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) for _ in range(4)] + ["who?\nwhat"]
    pairs = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, rng.choice([4, 20, 60, 250]))))
        doc = f"{rng.choice(extras)} {words}" if i % 3 == 0 else words
        pairs.append((queries[i % len(queries)], doc))
    return pairs


class QwenReference:
    """Qwen3-Reranker's model card code on a checkpoint; ``max_length`` and ``task`` as the card's variables."""

    prefix = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
              "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

    def __init__(self, path: Path, max_length: int = 8192) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
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
        return self.tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=self.max_length)

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
        log_probs = self.compute_logits(inputs).numpy().astype(np.float64)
        ids = [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        return np.exp(log_probs[:, 1]), log_probs[:, 1] - log_probs[:, 0], ids
