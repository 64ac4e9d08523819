"""Causal-LM loss computed only where there are labels.

A plain `model(input_ids, labels=...)` projects every position onto the 262k-token vocabulary:
for Gemma 3 270M the lm_head (640 × 262144, 168M MACs per token) costs more than the 18 decoder
layers (~100M MACs per token), and its fp32 logits take 1 MiB per token. Only the model's turns
carry labels (~18% of tokens in tool-call data), so we run the decoder, gather the hidden states
that predict a labelled token, and apply lm_head to those rows only. Same loss, a fraction of the
lm_head work and memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import IGNORE, PackedRow


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) long
    position_ids: torch.Tensor  # (B, T) long, reset to 0 at every packed example
    labels: torch.Tensor  # (B, T) long, IGNORE where not trained
    tokens: int  # real tokens (padding excluded)

    @property
    def label_count(self) -> int:
        return int((self.labels[:, 1:] != IGNORE).sum())


def collate(rows: list[PackedRow], pad_id: int) -> Batch:
    """Rows padded to the longest one. Padding gets its own position run, so it forms a separate
    'example' in the packed mask, and IGNORE labels."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.arange(width, dtype=torch.long).repeat(len(rows), 1)
    for i, r in enumerate(rows):
        n = len(r)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        pos[i, :n] = torch.tensor(r.position_ids)
        pos[i, n:] = torch.arange(width - n)
    return Batch(ids, pos, labels, tokens=sum(len(r) for r in rows))


def summed_token_loss(causal_lm: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Sum of next-token cross-entropies over labelled positions (divide by the label count).

    `causal_lm` is a *ForCausalLM module (peft's LoRA layers live inside it): `.model` is the
    decoder, `.lm_head` the vocabulary projection.
    """
    hidden = causal_lm.model(
        input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
    ).last_hidden_state
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE
    logits = causal_lm.lm_head(hidden[:, :-1][keep])
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")
