"""Dynamic batching of queries on the tiny model."""

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from model.evaluation import generate_answers
from model.prompting import as_written
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


def test_an_answer_its_check_rejects_is_made_again_from_the_question_alone(tiny_lm):
    lm, _, _ = tiny_lm
    replica = SimpleNamespace(lm=lm, version=3, lock=threading.RLock())
    batcher = QueryBatcher(replica, window_ms=200, max_batch=8)
    noted = "The sea"  # the whole text before the answer, notes and all: the tiny model says "sea sea ..."
    try:
        with ThreadPoolExecutor(2) as pool:
            rejected = pool.submit(batcher.answer, QUESTIONS[0], 8, noted, True, None, lambda answer: False)
            kept = pool.submit(batcher.answer, QUESTIONS[1], 8, noted, True, None, lambda answer: True)
            rejected, kept = rejected.result(), kept.result()
    finally:
        batcher.close()
    assert rejected.set_aside and rejected.text == generate_answers(lm, [QUESTIONS[0]], 8)[0]
    assert not kept.set_aside and kept.text == generate_answers(lm, [noted], 8, prompt=as_written)[0]
    assert rejected.text != kept.text
