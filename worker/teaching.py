"""How the worker teaches one batch of facts: the model writes its own questions, then the sparse steps.

Kept apart from the loop, so a benchmark can teach exactly as the service does, without Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, TeachReport, teach
from model.lm import MemoryLM
from model.questions import with_synthetic_questions
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def teach_facts(lm: MemoryLM, learner: SparseMemoryLearner, facts: Sequence[Fact],
                settings: WorkerSettings) -> TeachReport:
    """Teach one batch in place (the caller holds whatever lock guards `lm`)."""
    if settings.synthetic_questions:
        facts = with_synthetic_questions(lm, facts)
    batch = build_batch(facts, lm.tokenizer).to(lm.device)
    report = teach(learner, batch, settings.sparse_config().schedule)
    log.info("batch of %d: loss %.3f -> %.3f in %d steps (%.2fs)", len(facts), report.first_loss,
             report.last_loss, report.steps, report.seconds)
    return report
