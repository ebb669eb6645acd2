"""Notes: the live taught statements a question's words find, put into the prompt beside the memory.

The memory answers a fact's question in the frame it was taught in; asked the other way round ("Who
invented the Zorblax engine?" taught as "Mira Quell invented ...") or in other words, a 135M model
rarely writes the answer from its weights, but reads it well from a note in front of it. So the
statements themselves are indexed by BM25 (bm25s) and the few that best match a question go into a
system turn before it. A floor on how much of the question's words a note must hold (`min_match`)
keeps a taught "capital of" statement away from a question about a real capital. Notes hold exactly
the live facts: an undone fact is gone from them at the same version it is gone from the table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import bm25s

from model.prompting import conversation_prompt, last_user_turn

NOTES = 3  # statements put into the prompt, at most
SYSTEM = "Answer the question briefly. These notes may help:\n{notes}"


@dataclass(frozen=True)
class Note:
    fact_id: str
    text: str


class Notes:
    """Taught statements by fact id, one BM25 document each (its text and paraphrases); a note is the text."""

    def __init__(self, per_question: int = NOTES, min_match: float = 0.0) -> None:
        if per_question < 1 or not 0 <= min_match <= 1:
            raise ValueError(f"notes per question must be >= 1 and min_match in [0, 1], got {per_question}, "
                             f"{min_match}")
        self.per_question = per_question
        self.min_match = min_match  # the share of the question's words (stop words aside) a note's fact must hold
        self._facts: dict[str, tuple[str, str, frozenset[str]]] = {}  # fact id -> (note, document, its words)
        self._ids: list[str] = []  # the index's documents, in order
        self._index: bm25s.BM25 | None = None
        self._lock = threading.RLock()  # an API's threads ask while its follower brings the facts up to date

    def __len__(self) -> int:
        return len(self._facts)

    def add(self, fact_id: str, text: str, paraphrases: Sequence[str] = ()) -> None:
        note = text.strip()
        document = " ".join(s.strip() for s in (note, *paraphrases) if s.strip())
        with self._lock:
            if self._facts.get(fact_id, ("", None))[1] != document:
                self._facts[fact_id] = (note, document, frozenset(words(document)))
                self._index = None  # built again on the next question: a thousand short documents take ms

    def keep_only(self, fact_ids: Iterable[str]) -> None:
        live = set(fact_ids)
        with self._lock:
            for gone in [f for f in self._facts if f not in live]:
                del self._facts[gone]
                self._index = None

    def sync(self, live: Iterable[str],
             statements_of: Callable[[Sequence[str]], Sequence[Sequence[str] | None]]) -> None:
        """Hold exactly the facts in `live`, reading the statements (its text, then its paraphrases) of those not
        held yet with `statements_of` (a fact whose record is gone is left out)."""
        live = list(live)
        self.keep_only(live)
        new = [f for f in live if f not in self._facts]
        for fact_id, statements in zip(new, statements_of(new) if new else [], strict=True):
            if statements:
                self.add(fact_id, statements[0], statements[1:])

    def find(self, question: str) -> list[Note]:
        """The notes whose facts share words with the question (at least `min_match` of them), best first."""
        asked = set(words(question))
        if not asked:
            return []
        tokens = bm25s.tokenize([question], stopwords="en", show_progress=False)
        with self._lock:
            if not self._facts:
                return []
            if self._index is None:
                self._ids = list(self._facts)
                self._index = bm25s.BM25()
                self._index.index(bm25s.tokenize([self._facts[f][1] for f in self._ids], stopwords="en",
                                                 show_progress=False), show_progress=False)
            found, scores = self._index.retrieve(tokens, k=min(self.per_question, len(self._ids)),
                                                 show_progress=False)
            out = []
            for i, score in zip(found[0], scores[0], strict=True):
                note, _, held = self._facts[self._ids[int(i)]]
                if score > 0 and len(asked & held) >= self.min_match * len(asked):
                    out.append(Note(self._ids[int(i)], note))
            return out

    def chat(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[Note]]:
        """The chat with the notes its last user turn finds in its system turn (added to the chat's own system
        prompt, or a new one first), and those notes; as asked when none is found."""
        last = last_user_turn(messages)
        notes = self.find(messages[last]["content"]) if last is not None else []
        if not notes:
            return messages, []
        system = SYSTEM.format(notes="\n".join(f"- {n.text}" for n in notes))
        if messages and messages[0].get("role") == "system":
            return [{"role": "system", "content": f"{messages[0]['content']}\n\n{system}"}, *messages[1:]], notes
        return [{"role": "system", "content": system}, *messages], notes

    def prompt(self, tokenizer, question: str) -> tuple[str, list[Note]]:
        """The question in the chat template with the notes it finds in a system turn before it (none: as asked,
        the same text as `chat_prompt`), and those notes."""
        messages, notes = self.chat([{"role": "user", "content": question}])
        return conversation_prompt(tokenizer, messages), notes


def words(text: str) -> list[str]:
    """A text's words as BM25 counts them (lower case, English stop words left out)."""
    return bm25s.tokenize([text], stopwords="en", return_ids=False, show_progress=False)[0]
