"""`smft bench speed` machinery on the tiny model: every method times, ratios come from the same run."""

from model.snapshot import save_snapshot
from model.speed import markdown, ratios, time_queries, time_training_steps


def test_speed_benchmark_times_every_method_and_the_query_overhead(tiny_lm, tiny_model_dir, tmp_path):
    lm, stats, _ = tiny_lm
    snapshot = save_snapshot(lm, stats, 0, tmp_path / "v0.safetensors")
    timings = time_training_steps(str(tiny_model_dir), snapshot, repeats=2)
    timings += time_queries(str(tiny_model_dir), snapshot, repeats=2, new_tokens=4)
    assert [t.name for t in timings] == [
        "train step: sparse", "train step: sparse (full forward)", "train step: lora", "train step: full",
        "query, 4 tokens: base model", "query, 4 tokens: with memory"]
    assert all(t.runs == 2 and 0 < t.min_ms <= t.median_ms <= t.max_ms for t in timings)
    found = ratios(timings)
    assert set(found) == {"sparse step / full-finetuning step", "sparse step / LoRA step",
                          "sparse step / same step through the whole model",
                          "query with memory / base model (overhead)"}
    assert "| train step: sparse |" in markdown(timings, found)
