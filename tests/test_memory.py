import pytest
import torch

from model.config import MemoryConfig
from model.memory import ProductKeyMemory


@pytest.mark.parametrize("field,value", [("n_keys", 1), ("heads", 0), ("topk", 0), ("topk", 99),
                                         ("key_dim", 7), ("temperature", 0.0), ("layers", ())])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        MemoryConfig(**{"n_keys": 16, "topk": 4, field: value})


def test_config_round_trips_through_json():
    cfg = MemoryConfig(n_keys=8, topk=4, layers=(1, 3), memory_plus=True)
    assert MemoryConfig.from_json(cfg.to_json()) == cfg


def brute_force_lookup(memory: ProductKeyMemory, x: torch.Tensor):
    """Score every slot explicitly: the product-key search must find the same top-k."""
    cfg = memory.config
    q = memory.query(x - memory.input_mean).view(-1, cfg.heads, 2, cfg.key_dim // 2)
    q = torch.nn.functional.normalize(q, dim=-1)
    keys = torch.nn.functional.normalize(memory.sub_keys, dim=-1)
    half = torch.einsum("nhsd,hskd->nhsk", q, keys)  # [N, heads, 2, n]
    full = half[:, :, 0, :, None] + half[:, :, 1, None, :]  # [N, heads, n, n]
    return full.flatten(-2).topk(cfg.topk, dim=-1)


def test_product_key_lookup_equals_exhaustive_search():
    cfg = MemoryConfig(n_keys=12, heads=3, topk=5, key_dim=8, context_weight=0.0)
    memory = ProductKeyMemory(cfg, hidden_size=16)
    x = torch.randn(7, 16)
    slots, weights = memory.lookup(x)
    best, expected = brute_force_lookup(memory, x)
    assert slots.shape == (7, 3, 5)
    assert torch.equal(slots.sort(-1).values, expected.sort(-1).values)
    assert torch.allclose(weights, torch.softmax(best * cfg.temperature, -1), atol=1e-6)


def test_zero_values_read_nothing_and_reads_are_weighted_sums():
    cfg = MemoryConfig(n_keys=8, heads=2, topk=3, key_dim=4, context_weight=0.0)
    memory = ProductKeyMemory(cfg, hidden_size=6)
    x = torch.randn(2, 5, 6)
    assert torch.count_nonzero(memory(x)) == 0
    with torch.no_grad():
        memory.values.normal_()
    slots, weights = memory.lookup(x)
    expected = (memory.values[slots] * weights[..., None]).sum(dim=(-2, -3))
    assert torch.allclose(memory(x), expected, atol=1e-5)


def test_trainable_rows_act_like_editing_the_table():
    # float32: a bfloat16 table would round the edited rows, which the trainable ones (float32) are not
    cfg = MemoryConfig(n_keys=8, heads=2, topk=3, key_dim=4, context_weight=0.0, value_dtype="float32")
    memory = ProductKeyMemory(cfg, hidden_size=6)
    x = torch.randn(4, 6)
    slots = memory.lookup(x)[0].flatten().unique()[:5]
    rows = torch.randn(len(slots), 6)
    memory.attach_trainable_rows(slots, rows)
    routed = memory(x)
    memory.detach_trainable_rows()
    with torch.no_grad():
        memory.values[slots] += rows
    assert torch.allclose(routed, memory(x), atol=1e-6)


def test_memory_plus_is_zero_at_init_and_records_reads():
    cfg = MemoryConfig(n_keys=8, heads=2, topk=3, key_dim=4, memory_plus=True, context_weight=0.0)
    memory = ProductKeyMemory(cfg, hidden_size=6)
    memory.recorded_slots = []
    out = memory(torch.randn(2, 3, 6))
    assert torch.count_nonzero(out) == 0
    assert memory.recorded_slots[0].shape == (2, 3, 2, 3)


def test_partial_forward_records_the_same_reads_as_a_full_one(tiny_lm):
    lm, _, _ = tiny_lm
    ids = torch.tensor([lm.encode("The river flows to the sea.")], device=lm.device)
    with lm.recording() as full:
        lm.logits(ids)
    with lm.recording() as partial:
        lm.run_to_memories(ids)
    assert torch.equal(full[1][0], partial[1][0])


def test_rows_without_the_memory_are_answered_as_version_0_in_the_same_batch(tiny_lm):
    from model.evaluation import generate_answer_ids

    lm, _, _ = tiny_lm
    questions = ["What is blue?", "Who invented the Zorblax engine?"]
    base = generate_answer_ids(lm, questions, 6)  # version 0: a table of zeros
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for memory in lm.memories.values():
            memory.values.copy_(torch.randn(memory.values.shape, generator=gen) * 5)
    taught = generate_answer_ids(lm, questions, 6)
    assert taught[0] != base[0] and taught[1] != base[1]  # the memory changes both answers
    assert generate_answer_ids(lm, questions, 6, use_memory=[False, True]) == [base[0], taught[1]]
    assert generate_answer_ids(lm, questions, 6, use_memory=[True, True]) == taught
    assert all(m.muted is None for m in lm.memories.values())  # only for that generation
