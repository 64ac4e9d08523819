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
    weights: torch.Tensor | None = None  # (B, T) float loss weight of each position's label; None: all 1

    @property
    def label_count(self) -> int:
        return int((self.labels[:, 1:] != IGNORE).sum())


def collate(rows: list[PackedRow], pad_id: int, multiple: int = 1, decision_weight: float = 1.0) -> Batch:
    """Rows right-padded to the longest one, rounded up to `multiple`. Padding gets its own
    position run, so it forms a separate 'example' in the packed mask, and IGNORE labels.
    `decision_weight` ≠ 1 weighs the loss of each row's decision tokens (`PackedRow.decisions`:
    another call, or the end of the turn) by that factor; every other label keeps weight 1.

    Why round up: on CPU, oneDNN builds (JIT-compiles) a kernel per new matmul shape, ~20 ms for a
    bf16 640×2048 projection against ~13 ms to run it; a handful of row widths keeps them cached."""
    longest = max(len(r) for r in rows)
    width = -(-longest // multiple) * multiple
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.arange(width, dtype=torch.long).repeat(len(rows), 1)
    for i, r in enumerate(rows):
        n = len(r)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        pos[i, :n] = torch.tensor(r.position_ids)
        pos[i, n:] = torch.arange(width - n)
    weights = None
    if decision_weight != 1.0 and any(r.decisions for r in rows):
        weights = torch.ones((len(rows), width), dtype=torch.float32)
        for i, r in enumerate(rows):
            weights[i, list(r.decisions)] = decision_weight
    return Batch(ids, pos, labels, tokens=sum(len(r) for r in rows), weights=weights)


def summed_token_loss(
    causal_lm: torch.nn.Module, batch: Batch, label_multiple: int = 1
) -> torch.Tensor:
    """Sum of next-token cross-entropies over labelled positions (divide by the label count),
    each times its label's weight where the batch has weights (`collate(decision_weight=...)`).

    `causal_lm` is a *ForCausalLM module (peft's LoRA layers live inside it): `.model` is the
    decoder, `.lm_head` the vocabulary projection. `use_cache=False` matters: with a cache object
    transformers ignores the position resets and packed examples would attend to each other.
    `label_multiple` rounds the number of projected positions up with ignored ones (same reason
    as `collate(multiple=...)`: fewer distinct matmul shapes).
    """
    hidden = causal_lm.model(
        input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
    ).last_hidden_state
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = batch.labels[:, 1:].reshape(-1)
    labelled = targets != IGNORE
    index = labelled.nonzero().squeeze(1)
    extra = min(-index.numel() % label_multiple, targets.numel() - index.numel())
    if extra:
        index = torch.cat([index, (~labelled).nonzero().squeeze(1)[:extra]])
    logits = causal_lm.lm_head(hidden[index])
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    if batch.weights is None:
        return F.cross_entropy(logits.float(), targets[index], ignore_index=IGNORE, reduction="sum")
    per_label = F.cross_entropy(logits.float(), targets[index], ignore_index=IGNORE, reduction="none")
    weights = batch.weights[:, 1:].reshape(-1)[index].to(per_label.device)
    return (per_label * weights).sum()
