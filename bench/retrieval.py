"""Retrieval: what many users would build instead of teaching the model. The taught statements are indexed
by BM25 (bm25s) and the few that best match a question go into the prompt ahead of it; nothing is trained.

Every question goes the same way, the retention probe's too: notes that match a probe question's words
(a taught "capital of" fact for a question about a real capital) are put in front of it, which is how
retrieval forgets. What a careful user adds, a floor on how much of the question a note must hold
(`min_match`), keeps such notes out, at the cost of questions asked in other words.
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s

from model.facts import Fact
from model.prompting import conversation_prompt, last_user_turn

NOTES = 3  # statements put into the prompt, at most
SYSTEM = "Answer the question briefly. These notes may help:\n{notes}"


class Retriever:
    """The taught facts, one BM25 document per fact (its statements together); a note is its first statement."""

    def __init__(self, notes: int = NOTES, min_match: float = 0.0) -> None:
        self.notes_per_question = notes
        self.min_match = min_match  # the share of the question's words (stop words aside) a note's fact must hold
        self.documents: list[str] = []
        self._words: list[set[str]] = []
        self.notes: list[str] = []
        self._index: bm25s.BM25 | None = None

    def add(self, facts: Sequence[Fact]) -> None:
        documents = [" ".join(f.statements) for f in facts]
        self.documents += documents
        self._words += [set(words) for words in _words(documents)]
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
        asked = set(_words([question])[0])
        return [self.notes[int(i)] for i, score in zip(found[0], scores[0], strict=True)
                if score > 0 and len(asked & self._words[int(i)]) >= self.min_match * len(asked)]

    def chat(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The chat with the notes its last user turn retrieves in its system turn (added to the chat's own
        system prompt, or a new one first); as asked when none is retrieved."""
        last = last_user_turn(messages)
        notes = self.retrieve(messages[last]["content"]) if last is not None else []
        if not notes:
            return messages
        system = SYSTEM.format(notes="\n".join(f"- {n}" for n in notes))
        if messages and messages[0].get("role") == "system":
            return [{"role": "system", "content": f"{messages[0]['content']}\n\n{system}"}, *messages[1:]]
        return [{"role": "system", "content": system}, *messages]

    def prompt(self, tokenizer, question: str) -> str:
        """The question in the chat template, the retrieved notes in a system turn before it (none: as asked)."""
        return conversation_prompt(tokenizer, self.chat([{"role": "user", "content": question}]))


def _words(texts: Sequence[str]) -> list[list[str]]:
    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)
