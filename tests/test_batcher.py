"""Dynamic batching of queries on the tiny model."""

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from model.evaluation import generate_answers
from service.batcher import QueryBatcher

QUESTIONS = ["Who invented the engine?", "Where does the river flow?", "How many times does the fox jump?",
             "What is the sea?", "Why?", "Name a document."]


def test_questions_arriving_together_share_one_generation_with_their_own_limits(tiny_lm):
    lm, _, _ = tiny_lm
    replica = SimpleNamespace(lm=lm, version=7, lock=threading.RLock())
    batcher = QueryBatcher(replica, window_ms=200, max_batch=8)
    limits = [2, 4, 6, 8, 10, 12]
    try:
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            done = list(pool.map(batcher.answer, QUESTIONS, limits))
    finally:
        batcher.close()
    assert max(d.batch_size for d in done) > 1
    assert all(d.version == 7 for d in done)
    for d, limit in zip(done, limits, strict=True):
        assert len(lm.encode(d.text)) <= limit + 1  # decode/encode may split one token differently
    alone = [generate_answers(lm, [q], limit)[0] for q, limit in zip(QUESTIONS, limits, strict=True)]
    assert [d.text for d in done] == alone  # batching changes the latency, not the answers


def test_an_error_reaches_every_waiter_and_the_batcher_goes_on(tiny_lm):
    lm, _, _ = tiny_lm
    replica = SimpleNamespace(lm=None, version=0, lock=threading.RLock())
    batcher = QueryBatcher(replica, window_ms=1)
    try:
        try:
            batcher.answer("Who?", 3)
            raise AssertionError("expected NotReadyError")
        except RuntimeError as exc:
            assert "not loaded" in str(exc)
        replica.lm = lm
        assert batcher.answer("Who?", 3).version == 0
    finally:
        batcher.close()
