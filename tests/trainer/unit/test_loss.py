"""The labelled-positions-only loss and packed attention, on a tiny random Gemma 3."""

from __future__ import annotations

import pytest
import torch

from trainer.training.data import IGNORE, PackedRow, TokenizedExample, pack
from trainer.training.loss import collate, summed_token_loss


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    model.eval()
    return model


def random_example(n: int, labelled_from: int, seed: int) -> TokenizedExample:
    g = torch.Generator().manual_seed(seed)
    ids = [2] + torch.randint(6, 100, (n - 1,), generator=g).tolist()
    return TokenizedExample(ids, [IGNORE if i < labelled_from else t for i, t in enumerate(ids)])


@torch.no_grad()
def test_loss_on_labelled_positions_equals_the_full_logits_loss(tiny_model):
    rows = [
        PackedRow(e.input_ids, e.labels, list(range(len(e.input_ids))), 1)
        for e in (random_example(30, 20, 1), random_example(30, 5, 2))
    ]
    batch = collate(rows, pad_id=0)

    ours = summed_token_loss(tiny_model, batch) / batch.label_count
    reference = tiny_model(input_ids=batch.input_ids, labels=batch.labels, use_cache=False).loss

    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_packed_examples_see_only_themselves_even_past_the_sliding_window(tiny_model):
    examples = [random_example(n, 3, seed) for seed, n in enumerate([40, 25, 30])]  # window is 16
    (row,) = pack(examples, max_seq_len=100)
    batch = collate([row], pad_id=0)

    packed = tiny_model.model(
        input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
    )
    offset = 0
    for e in examples:
        alone = tiny_model.model(
            input_ids=torch.tensor([e.input_ids]), use_cache=False
        ).last_hidden_state[0]
        n = len(e.input_ids)
        torch.testing.assert_close(
            packed.last_hidden_state[0, offset : offset + n], alone, rtol=1e-4, atol=1e-5
        )
        offset += n


@torch.no_grad()
def test_summed_loss_of_a_packed_row_is_the_sum_over_its_examples(tiny_model):
    examples = [random_example(n, 4, seed) for seed, n in enumerate([20, 12])]
    packed = collate(pack(examples, max_seq_len=64), pad_id=0)
    separate = sum(
        summed_token_loss(
            tiny_model,
            collate([PackedRow(e.input_ids, e.labels, list(range(len(e.input_ids))), 1)], 0),
        )
        for e in examples
    )

    torch.testing.assert_close(
        summed_token_loss(tiny_model, packed), separate, rtol=1e-4, atol=1e-4
    )


def test_per_example_attention_gives_the_masked_sdpa_results_and_gradients(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    from trainer.training.attention import register

    reference = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(
        tiny_checkpoint, dtype=torch.float32, attn_implementation=register()
    )
    examples = [
        random_example(n, 3, seed) for seed, n in enumerate([40, 25, 30, 10])
    ]  # window is 16
    batch = collate(pack(examples, max_seq_len=70), pad_id=0)  # two rows, the second one padded

    loss_ref, loss_ours = summed_token_loss(reference, batch), summed_token_loss(ours, batch)
    loss_ref.backward()
    loss_ours.backward()

    torch.testing.assert_close(loss_ours, loss_ref, rtol=1e-5, atol=1e-4)
    grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_decision_weight_scales_only_the_decision_tokens_loss(tiny_model):
    a, b = random_example(30, 10, 3), random_example(24, 8, 4)
    a = TokenizedExample(a.input_ids, a.labels, decisions=(15, 22))
    b = TokenizedExample(b.input_ids, b.labels, decisions=(12,))
    (row,) = pack([a, b], max_seq_len=64)
    assert row.decisions == (15, 22, 30 + 12), "decisions move with their example into the row"

    plain = collate([row], pad_id=0)
    weighted = collate([row], pad_id=0, decision_weight=4.0)
    assert plain.weights is None and collate([row], 0, decision_weight=1.0).weights is None
    assert weighted.weights[0, list(row.decisions)].tolist() == [4.0, 4.0, 4.0]
    assert float(weighted.weights.sum()) == weighted.weights.numel() + 3 * 3.0

    logits = tiny_model(input_ids=plain.input_ids, position_ids=plain.position_ids, use_cache=False).logits[0].float()
    at = [i - 1 for i in row.decisions]  # the position that predicts each decision token
    decision_ce = torch.nn.functional.cross_entropy(logits[at], plain.input_ids[0, list(row.decisions)],
                                                    reduction="sum")
    torch.testing.assert_close(summed_token_loss(tiny_model, weighted) - summed_token_loss(tiny_model, plain),
                               3.0 * decision_ce, rtol=1e-4, atol=1e-4)
