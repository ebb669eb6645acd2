"""Retrieval: what many users would build instead of teaching the model. The taught statements are indexed
by BM25 (bm25s) and the few that best match a question go into the prompt ahead of it; nothing is trained.

Every question goes the same way, the retention probe's too: notes that match a probe question's words
(a taught "capital of" fact for a question about a real capital) are put in front of it, which is how
retrieval forgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s

from model.facts import Fact
from model.prompting import conversation_prompt

NOTES = 3  # statements put into the prompt, at most
SYSTEM = "Answer the question briefly. These notes may help:\n{notes}"


class Retriever:
    """The taught facts, one BM25 document per fact (its statements together); a note is its first statement."""

    def __init__(self, notes: int = NOTES) -> None:
        self.notes_per_question = notes
        self.documents: list[str] = []
        self.notes: list[str] = []
        self._index: bm25s.BM25 | None = None

    def add(self, facts: Sequence[Fact]) -> None:
        self.documents += [" ".join(f.statements) for f in facts]
        self.notes += [f.text.strip() for f in facts]
        self._index = None  # built again on the next question: a thousand short documents take milliseconds

    def retrieve(self, question: str) -> list[str]:
        """The notes whose facts share words with the question, best first."""
        if not self.documents:
            return []
        if self._index is None:
            self._index = bm25s.BM25()
            self._index.index(bm25s.tokenize(self.documents, stopwords="en", show_progress=False),
                              show_progress=False)
        tokens = bm25s.tokenize([question], stopwords="en", show_progress=False)
        k = min(self.notes_per_question, len(self.documents))
        found, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        return [self.notes[int(i)] for i, score in zip(found[0], scores[0], strict=True) if score > 0]

    def prompt(self, tokenizer, question: str) -> str:
        """The question in the chat template, the retrieved notes in a system turn before it (none: as asked)."""
        notes = self.retrieve(question)
        messages = [{"role": "user", "content": question}]
        if notes:
            messages.insert(0, {"role": "system", "content": SYSTEM.format(notes="\n".join(f"- {n}" for n in notes))})
        return conversation_prompt(tokenizer, messages)
