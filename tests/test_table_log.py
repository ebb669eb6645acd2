"""bench/table_log.py: a benchmark's table kept as the rows each checkpoint changed, replayed bit for bit."""

import copy
import dataclasses

import pytest
import torch

from bench.table_log import TableLog
from model.lm import MemoryLM
from tests.conftest import TEST_DEVICE, TINY_MEMORY


def _write_rows(lm: MemoryLM, rows: list[int], value: float) -> None:
    with torch.no_grad():
        lm.memories[1].values[rows] = value


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_checkpoints_replay_to_the_table_and_its_writers(tiny_model_dir, tmp_path, dtype):
    torch.manual_seed(0)
    v0 = MemoryLM.load(str(tiny_model_dir), dataclasses.replace(TINY_MEMORY, value_dtype=dtype), TEST_DEVICE)
    lm = copy.deepcopy(v0)
    log = TableLog(tmp_path / "setting", stream="s")
    log.start(lm)
    _write_rows(lm, [1, 5], 0.1234567)
    first = log.write(lm, 2, {"a": {1: torch.tensor([1])}, "b": {1: torch.tensor([5])}})
    _write_rows(lm, [5, 9], -3.3)
    log.write(lm, 4, {"c": {1: torch.tensor([5, 9])}})
    assert first.stat().st_size < 4 * lm.memories[1].values[0].nbytes + 4096  # the rows changed, not the table

    replayed = copy.deepcopy(v0)
    facts, writers = log.replay(replayed, [2, 4])
    assert facts == 4 and torch.equal(replayed.memories[1].values, lm.memories[1].values)
    assert replayed.memories[1].values.dtype == lm.memories[1].values.dtype
    assert sorted(writers.live()) == ["a", "b", "c"] and len(writers) == 4

    # a run stopped between its two checkpoints resumes from the first
    log.path(4).unlink()
    partial = copy.deepcopy(v0)
    assert log.replay(partial, [2, 4])[0] == 2
    assert torch.equal(partial.memories[1].values[5], torch.full_like(partial.memories[1].values[5], 0.1234567))
    # deltas of another stream, or not chained to the checkpoint before, are not replayed
    untouched = copy.deepcopy(v0)
    assert TableLog(tmp_path / "setting", stream="other").replay(untouched, [2])[0] == 0
    assert log.replay(untouched, [4])[0] == 0
    log.path(2).write_bytes(log.path(2).read_bytes()[:100])  # damaged: the replay stops before it
    assert log.replay(untouched, [2])[0] == 0
    assert torch.equal(untouched.memories[1].values, v0.memories[1].values)


def test_a_resumed_log_diffs_against_where_it_resumed_and_clear_starts_over(tiny_lm, tmp_path):
    lm, _, _ = tiny_lm
    v0 = copy.deepcopy(lm)
    log = TableLog(tmp_path / "setting", stream="s")
    log.start(lm)
    _write_rows(lm, [2], 1.0)
    log.write(lm, 3, {})
    resumed, again = copy.deepcopy(v0), TableLog(tmp_path / "setting", stream="s")
    assert again.replay(resumed, [3])[0] == 3
    again.start(resumed, 3)
    _write_rows(resumed, [7], 2.0)
    again.write(resumed, 6, {})
    fresh = copy.deepcopy(v0)
    assert log.replay(fresh, [3, 6])[0] == 6 and torch.equal(fresh.memories[1].values, resumed.memories[1].values)
    log.clear()
    assert log.replay(copy.deepcopy(v0), [3, 6])[0] == 0
