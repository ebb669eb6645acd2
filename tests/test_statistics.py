"""Version-0 statistics (model/statistics.py): one pass through the model gives what two did."""

from dataclasses import replace

import pytest
import torch

from model.context import fit_token_weights
from model.lm import MemoryLM
from model.statistics import fit_means_and_collect_stats
from tests.conftest import TEST_DEVICE, TINY_DOCS, TINY_MEMORY

# Two memory layers, both addressed by context as well as by the hidden state: every path of the capture.
MEMORY = replace(TINY_MEMORY, layers=(0, 1), context_weight=4.0)


def fitted(model_dir, keep_bytes: int) -> tuple[MemoryLM, object]:
    lm = MemoryLM.load(str(model_dir), MEMORY, device=TEST_DEVICE)
    docs = [f"{d} And more words follow here." * (1 + i % 3) for i, d in enumerate(TINY_DOCS)]  # uneven lengths
    fit_token_weights(list(lm.memories.values()), [lm.encode(d) for d in docs], scaffolding=[])
    return lm, fit_means_and_collect_stats(lm, docs, "fp", batch_size=5, keep_bytes=keep_bytes)


def test_reads_addressed_from_captured_inputs_equal_reads_of_a_second_forward(tiny_model_dir):
    kept_lm, kept = fitted(tiny_model_dir, keep_bytes=1 << 30)  # every batch addressed from its capture
    rerun_lm, rerun = fitted(tiny_model_dir, keep_bytes=0)  # every batch run through the model again
    assert set(kept.reads) == {0, 1} and kept.num_docs == len(TINY_DOCS)
    for layer in (0, 1):
        a, b = kept_lm.memories[layer], rerun_lm.memories[layer]
        assert a.input_mean.abs().sum() > 0 and a.context_mean.abs().sum() > 0
        assert torch.equal(a.input_mean, b.input_mean) and torch.equal(a.context_mean, b.context_mean)
        assert int(kept.reads[layer].sum()) > 0
        assert torch.equal(kept.reads[layer], rerun.reads[layer])
        assert torch.equal(kept.doc_freq[layer], rerun.doc_freq[layer])


def test_a_memory_that_adds_something_is_refused(tiny_model_dir):
    lm = MemoryLM.load(str(tiny_model_dir), MEMORY, device=TEST_DEVICE)
    with torch.no_grad():
        lm.memories[1].values[3] = 1.0
    with pytest.raises(ValueError, match="zero values"):
        fit_means_and_collect_stats(lm, TINY_DOCS, "fp")
