"""Retrieval: what many users would build instead of teaching the model. The taught statements are indexed
by BM25 and the few that best match a question go into the prompt ahead of it; nothing is trained (the
index is the service's own notes, model/notes.py, here over the bench's facts instead of the live ones).

Every question goes the same way, the retention probe's too: notes that match a probe question's words
(a taught "capital of" fact for a question about a real capital) are put in front of it, which is how
retrieval forgets. What a careful user adds, a floor on how much of the question a note must hold
(`min_match`), keeps such notes out, at the cost of questions asked in other words.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from model.contrast import Contrast
from model.evaluation import again_without_notes, generate_answers
from model.facts import Fact
from model.lm import MemoryLM
from model.notes import NOTES, Grounded, Notes, unnoted
from model.prompting import conversation_prompt


class Retriever:
    """The taught facts in the notes' index (model/notes.py: a BM25 document per statement)."""

    def __init__(self, notes: int = NOTES, min_match: float = 0.0, contrast: Contrast | None = None,
                 grounding: bool = False) -> None:
        self._notes = Notes(notes, min_match)
        self.notes_per_question = notes
        self.contrast = contrast  # answers with notes decoded against their prompts without (as SMFT_NOTE_CONTRAST)
        self.grounding = grounding  # one that took nothing from its notes made again without (SMFT_NOTE_GROUNDING)

    def add(self, facts: Sequence[Fact]) -> None:
        for fact in facts:  # numbered here: a bench's posts may share an id
            self._notes.add(str(len(self._notes)), fact.text, fact.paraphrases)

    def retrieve(self, question: str) -> list[str]:
        """The notes whose facts share words with the question, best first."""
        return [n.text for n in self._notes.find(question)]

    def grounded(self, question: str) -> Grounded | None:
        """With `grounding` and notes for the question: whether an answer took from them (model/notes.py)."""
        if not self.grounding or not (notes := self._notes.find(question)):
            return None
        return self._notes.grounding(question, notes)

    def in_scope(self, question: str) -> bool:
        """Whether the memory answers the question with SMFT_MEMORY_SCOPE=noted: a note is found for it, or it names
        something a taught fact names."""
        return self._notes.in_scope(question)

    def chat(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The chat with the notes its last user turn retrieves in its system turn (added to the chat's own
        system prompt, or a new one first); as asked when none is retrieved."""
        return self._notes.chat(messages)[0]

    def prompt(self, tokenizer, question: str) -> str:
        """The question in the chat template, the retrieved notes in a system turn before it (none: as asked)."""
        return self._notes.prompt(tokenizer, question)[0]

    def unnoted_prompt(self, tokenizer, question: str) -> str | None:
        """With `contrast`, the prompt `prompt` writes with its notes left out; None without one or without notes."""
        return self.unnoted_chat(tokenizer, [{"role": "user", "content": question}])

    def unnoted_chat(self, tokenizer, messages: list[dict[str, str]]) -> str | None:
        """With `contrast`, the chat `chat` writes with its notes left out, in the template; None without one or
        without notes."""
        if self.contrast is None or not self._notes.chat(messages)[1]:
            return None
        return conversation_prompt(tokenizer, unnoted(messages))


def noted_answers(lm: MemoryLM, questions: Sequence[str], max_new_tokens: int, retriever: Retriever | None = None,
                  scoped: bool = False) -> list[str]:
    """Plain questions in one batch, with the notes `retriever` finds before them (decoded against the prompt
    without them where it asks for contrast; with its `grounding`, an answer that took nothing from them made
    again without them); `scoped`: a question that finds no note and names nothing taught is
    answered as version 0 (SMFT_MEMORY_SCOPE=noted)."""
    if retriever is None:
        return generate_answers(lm, questions, max_new_tokens)
    use_memory = in_scope_flags(retriever, scoped, questions)
    answers = generate_answers(lm, questions, max_new_tokens, functools.partial(retriever.prompt, lm.tokenizer),
                               use_memory, [retriever.unnoted_prompt(lm.tokenizer, q) for q in questions],
                               retriever.contrast)
    again = again_without_notes(lm, answers, questions, [retriever.grounded(q) for q in questions], max_new_tokens,
                                use_memory)  # as the API's SMFT_NOTE_GROUNDING
    return [answer if other is None else other for answer, other in zip(answers, again, strict=True)]


def in_scope_flags(retriever: Retriever | None, scoped: bool, questions: Sequence[str]) -> list[bool] | None:
    """With `scoped`, whether each question's answer reads the memory (as SMFT_MEMORY_SCOPE=noted); else None."""
    return [retriever.in_scope(q) for q in questions] if scoped and retriever is not None else None
