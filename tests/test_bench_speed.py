"""`smft bench speed` machinery on the tiny model: every method times, ratios come from the same run."""

import pytest

from bench.report import speed_tables
from bench.speed import ratios, time_loading, time_queries, time_training_steps
from model.snapshot import save_snapshot

pytestmark = pytest.mark.slow  # many real processes


def test_speed_benchmark_times_every_method_and_the_query_overhead(tiny_lm, tiny_model_dir, tmp_path):
    lm, stats, _ = tiny_lm
    snapshot = save_snapshot(lm, stats, 0, tmp_path / "v0.safetensors")
    load = time_loading(str(tiny_model_dir), snapshot)
    assert load.name == "load: model and memory (1 x 256 rows, torch.float32)" and load.runs == 1 and load.min_ms > 0
    timings = time_training_steps(str(tiny_model_dir), snapshot, repeats=2)
    timings += time_queries(str(tiny_model_dir), snapshot, repeats=2, new_tokens=4, batch=3)
    assert [t.name for t in timings] == [
        "train step: sparse", "train step: sparse (full forward)", "train step: lora", "train step: full",
        "query, 4 tokens: base model", "query, 4 tokens: with memory",
        "query, 4 tokens, batch of 3: base model", "query, 4 tokens, batch of 3: with memory",
        "query, 4 tokens: base model with retrieval (BM25 over 1,000 facts, at most 3 notes)",
        "notes lookup (BM25 over 1,000 facts, at most 3 notes, floor 0.6)",
        "query, 4 tokens: with memory and notes (BM25 over 1,000 facts, at most 3 notes, floor 0.6)",
        "query, 4 tokens: with memory, explained (1,000 facts in the ledger)"]
    assert all(t.runs == 2 and 0 < t.min_ms <= t.median_ms <= t.max_ms for t in timings)
    found = ratios(timings)
    assert set(found) == {"sparse step / full-finetuning step", "sparse step / LoRA step",
                          "sparse step / same step through the whole model",
                          "query with memory / base model (4 tokens)",
                          "query with memory / base model (4 tokens, batch of 3)",
                          "explained query / query (one question)", "query with notes / query (one question)"}
    assert "| train step: sparse |" in speed_tables(timings, found)



def test_a_child_that_dies_before_reporting_fails_the_bench_instead_of_hanging(tiny_lm, tmp_path):
    lm, stats, _ = tiny_lm
    snapshot = save_snapshot(lm, stats, 0, tmp_path / "v0.safetensors")
    with pytest.raises(RuntimeError, match=r"_step_child.*'lora'.*exited with code 1 before reporting"):
        time_training_steps(str(tmp_path / "no-such-model"), snapshot, repeats=1, methods=("lora",))

def test_service_benchmark_measures_the_fact_to_answer_path(tiny_model_dir, background_file, tmp_path):
    from bench.report import service_tables
    from bench.service import ServiceBenchConfig, run_service_bench
    from tests.conftest import tiny_service_env

    env = tiny_service_env(tiny_model_dir, "unused", background_file, tmp_path / "data")
    del env["SMFT_REDIS_URL"]  # the benchmark starts its own private Redis
    result = run_service_bench(ServiceBenchConfig(facts=3, every_s=0.2, burst=2, env=env, ready_timeout_s=120,
                                                   load_clients=4, load_seconds=1.5))
    for key in ("fact_to_learned_ms", "fact_to_answer_ms", "delta_propagation_ms"):
        assert 0 < result[key]["p50"] <= result[key]["p95"], (key, result)
    assert result["fact_to_learned_ms"]["p50"] <= result["fact_to_answer_ms"]["p95"]
    assert result["delta_propagation_ms"]["n"] >= 1
    assert result["burst"]["facts"] == 2 and result["burst"]["facts_per_min"] > 0
    assert result["rss_mb"]["worker"] > 50 and result["rss_mb"]["api replica"] > 50
    assert [r["name"] for r in result["load"]] == [
        "queries, 1 client(s)", "queries, 4 client(s)", "queries + teaching, 1 client(s)",
        "queries + teaching, 4 client(s)"]
    assert all(r["queries"] > 0 and r["query_errors"] == 0 and r["teach_errors"] == 0 for r in result["load"])
    assert "202 to answer" in service_tables(result) and "queries + teaching, 4 client(s)" in service_tables(result)
