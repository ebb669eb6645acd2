"""`smft bench forgetting`: every answer a learn-forget run lost, taken apart on the tiny model."""

import json

import pytest
import torch

from cli.main import main


def test_a_fact_answered_once_and_missed_at_the_end_is_lost_on_the_way():
    from bench.forgetting import lost_taught
    from bench.learn_forget import Checkpoint

    def at(taught: int, missed: list[int]) -> Checkpoint:
        return Checkpoint(taught, 0.0, 0.0, 0.0, 0.0, 0.0, missed=missed)

    # fact 0 answered then lost; 1 never answered; 2 answered throughout; 3 taught last and missed
    assert lost_taught([at(2, [1]), at(4, [0, 1, 3])]) == [0]
    assert lost_taught([at(2, [1]), at(4, None)]) == []  # a run from before misses were recorded


@pytest.mark.slow  # the worker's teaching, its questions written by the model
def test_a_limit_takes_losses_spread_over_the_stream():
    from bench.forgetting import spread

    assert spread(list(range(10)), 4) == [0, 2, 5, 7]
    assert spread([3, 8], 4) == [3, 8] and spread([3, 8], None) == [3, 8] and spread([], 2) == []


def test_every_lost_answer_is_taken_apart_and_version_0_brings_it_back(
        tiny_lm, tiny_model_dir, background_file, tmp_path, monkeypatch):
    from bench.facts import generate_facts
    from bench.forgetting import CAUSES, capped_rows, changed_rows, memory_off_at, rows_restored, take_apart
    from bench.learn_forget import Baseline, Stream, run_method, stream_key
    from bench.methods import parse_method_spec
    from bench.table_log import TableLog
    from model.config import StepSchedule
    from model.evaluation import generate_answer_ids, mean_nll
    from model.probe import read_probe
    from model.snapshot import save_snapshot

    lm, stats, corpus = tiny_lm
    for name, value in {"SMFT_BATCH_FACTS": "2", "SMFT_STEPS": "4", "SMFT_TOP_T": "8", "SMFT_LR": "2.0",
                        "SMFT_NEIGHBOURS_PER_FACT": "0", "SMFT_BACKGROUND": f'["{background_file}"]'}.items():
        monkeypatch.setenv(name, value)
    facts = generate_facts(4, seed=3)
    run = tmp_path / "run"
    save_snapshot(lm, stats, 0, run / "v0.safetensors")
    stream = Stream(tuple(facts), tuple(read_probe()[:2]), tuple(corpus.heldout_texts),
                    Baseline(1.0, mean_nll(lm, corpus.heldout_texts)), StepSchedule(steps=10), eval_every=2)
    result = run_method(lm, stats, parse_method_spec("service"), stream, run / "progress" / "service.json")
    assert all(c.missed is not None and c.probe_missed is not None for c in result.checkpoints)

    base = {idx: m.values.detach().clone() for idx, m in lm.memories.items()}  # version 0's: zero
    tables = TableLog(run / "progress" / "service", stream_key(stream.facts, stream.schedule, stream.eval_every))
    taught, writers = tables.replay(lm, [c.facts_taught for c in result.checkpoints])
    assert taught == 4
    trained = lm.memories[1].values
    before = trained.detach().clone()
    everything = {1: torch.arange(trained.shape[0])}
    changed_slots = changed_rows(lm, base)
    assert 0 < len(changed_slots[1]) < trained.shape[0]  # training wrote some rows, not the table

    ids = torch.tensor([lm.encode("The river flows to the sea")])
    with rows_restored(lm, base, everything):
        v0_logits = lm.logits(ids)
    with memory_off_at(lm, torch.arange(ids.shape[1])):
        assert torch.allclose(lm.logits(ids), v0_logits)  # a memory of zeros adds nothing
    with rows_restored(lm, base, changed_slots):
        assert torch.equal(lm.logits(ids), v0_logits)  # the changed rows are all that differ
    assert not torch.allclose(lm.logits(ids), v0_logits)

    # The random tiny model's answers decode to nothing a probe could check, so its answers are compared as
    # tokens: every question whose greedy answer training changed is a loss to take apart.
    asked = [f.question for f in generate_facts(24, seed=9)]
    with rows_restored(lm, base, everything):
        old = generate_answer_ids(lm, asked, 12)
    new = generate_answer_ids(lm, asked, 12)
    changed = [i for i in range(len(asked)) if old[i] != new[i]]
    assert changed
    for i in changed:
        loss = take_apart(lm, base, writers, asked[i], old[i], new[i], capped_rows(lm, None),
                          changed_slots)
        assert loss is not None and loss.expected_token != loss.now_token
        assert loss.slots_kept == 1.0  # one memory layer: a fixed input reads the same slots before and after
        assert {s.fact_id for s in loss.sources} <= {f.fact.fact_id for f in facts}
        assert 0 < sum(s.share for s in loss.sources) <= 1 + 1e-6
        assert set(loss.brought_back) == set(CAUSES)
    assert torch.equal(trained, before)  # every row put back as it was

    # the command reads the run back; another stream is refused
    flags = ["--model", str(tiny_model_dir), "--facts", "4", "--seed", "3", "--every", "2"]
    assert main(["bench", "forgetting", str(run), *flags]) == 0
    assert (run / "forgetting" / "forgetting.md").read_text().startswith("After 4 facts:")
    bands = json.loads((run / "forgetting" / "forgetting.json").read_text())["table"]
    written = {b["rows"]: b["count"] for b in bands}
    assert sum(written.values()) == len(changed_slots[1])  # every written row in one band
    assert written["at the cap"] == 0  # the tiny run has no cap (SMFT_MAX_ROW_NORM unset: 250, far above its rows)
    counts = writers.writer_counts(1, trained.shape[0])
    assert int(counts.sum()) == len(writers) and set(counts.nonzero().flatten().tolist()) == \
        set(changed_slots[1].tolist())
    with pytest.raises(SystemExit, match="no table of this stream"):
        main(["bench", "forgetting", str(run), *flags[:-1], "3"])
