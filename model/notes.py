"""Notes: the live taught statements a question's words find, put into the prompt beside the memory.

The memory answers a fact's question in the frame it was taught in; asked the other way round ("Who
invented the Zorblax engine?" taught as "Mira Quell invented ...") or in other words, a 135M model
rarely writes the answer from its weights, but reads it well from a note in front of it. So the
statements themselves are indexed by BM25 (bm25s, words stemmed by PyStemmer) and the few that best
match a question go into a system turn before it. Notes hold exactly the live facts: an undone fact
is gone from them at the same version it is gone from the table.

A floor keeps a taught "capital of Vessaly" statement away from "What is the capital of Peru?": a
note must hold at least `min_match` of the question's content words (stemmed; NLTK's stop words,
question words and auxiliaries among them, left out), and, where the question names something (a
capitalised word past the first, or a number), its most particular name: "What river flows through
London?" gets no note on the Wynket River though it holds two of its three words, and "Into which
lake does the Miralnex River flow?" only the Miralnex River's, not every river's. Where a note names
everything the question names (as names: "Elena", not the "new" of "our new head of finance" for "New
Zealand"), half the share will do: people reword around the name ("Which city is Elena based in?" for "My
sister Elena lives in Porto.", one word of three), and a name held as a name says which note is meant
(session 37: of 72 people's reworded questions 7 miss their note against 22, and no probe question more
finds a note; its cost is a question about a corrected country, "Which continent is Nigeria in?", finding
the correction "The capital of Nigeria is Nexdraob.", which the model then misreads). Until session 33 the
floor counted "what" and "did" as words, so "What did Mira Quell invent?" found no note in "Mira
Quell invented the Zorblax engine" (2 of 5). Weighing the words by their IDF over the notes was
tried and dropped: a word no note holds then weighs most, and the common ones of a reworded
question ("How many people live on ...?") kept twice as many taught facts' questions from their
notes (docs/usage.md, session 34).

A note can be found and still misread: "Which continent is Nigeria in?" finds the correction "The capital of
Nigeria is Nexdraob." (the question names only Nigeria) and the model answers "Nigeria is a continent."
`grounding` says whether an answer took something from its notes, a word of theirs its question does not
hold (the answer itself, a name, a number); one that took nothing is answered again without them, as a
question that finds no note is (SMFT_NOTE_GROUNDING).

`mentions` says whether a question names something a live fact's statement names: with
SMFT_MEMORY_SCOPE=noted the memory answers the questions that find a note or mention a taught name,
and version 0 the others.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import bm25s
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

from model.documents import statements_of
from model.prompting import conversation_prompt, last_user_turn
from model.questions import key_terms

NOTES = 3  # statements put into the prompt, at most
FOUND_KEPT = 4096  # questions whose notes are kept until the notes change
BRIEFLY = "Answer the question briefly."
SYSTEM = BRIEFLY + " These notes may help:\n{notes}"
# NLTK's English stop words (question words and auxiliaries among them) and the words of a request
STOP_WORDS = (*STOPWORDS_EN_PLUS, "could", "would", "may", "might", "must", "shall", "tell", "please", "also")
_STOP = frozenset(STOP_WORDS)
_WORD = re.compile(r"\w+")
# A closed question ("Is the standup at 9?") is answered by a yes or a no, which takes no word from its notes
_CLOSED = frozenset({"am", "is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have", "had",
                     "will", "would", "should", "shall", "may", "might", "must"})
_YES_NO = re.compile(r"\W*(yes|no)\b", re.IGNORECASE)
Grounded = Callable[[str], bool]  # whether an answer took something from the notes before its question


@dataclass(frozen=True)
class Note:
    fact_id: str
    text: str


class Notes:
    """Taught statements by fact id, one BM25 document per statement (a fact posted with paraphrases: its text and
    paraphrases together; one posted as several sentences: each statement alone, as the worker teaches it); a
    note is the statement."""

    def __init__(self, per_question: int = NOTES, min_match: float = 0.0) -> None:
        if per_question < 1 or not 0 <= min_match <= 1:
            raise ValueError(f"notes per question must be >= 1 and min_match in [0, 1], got {per_question}, "
                             f"{min_match}")
        self.per_question = per_question
        self.min_match = min_match  # the share of the question's content words a note must hold
        self._posted: dict[str, tuple[str, ...]] = {}  # fact id -> its documents, as last added
        # (fact id, statement) -> (note, document, its words, the names among them)
        self._pieces: dict[tuple[str, int], tuple[str, str, frozenset[str], frozenset[str]]] = {}
        self._ids: list[tuple[str, int]] = []  # the index's documents, in order
        self._index: bm25s.BM25 | None = None
        self._found: dict[str, list[Note]] = {}  # question -> its notes, until the notes change: each answer path
        # (prompt, prompt without notes, scope, grounding) asks for them
        self._stemmer = Stemmer.Stemmer("english")  # not thread-safe: used under the lock only
        self._lock = threading.RLock()  # an API's threads ask while its follower brings the facts up to date

    def __len__(self) -> int:
        return len(self._posted)

    def add(self, fact_id: str, text: str, paraphrases: Sequence[str] = ()) -> None:
        # A paragraph is one note per statement: whole, a note of four facts was answered with the wrong one
        # ("Which river flows into Lake Vellenfen?" -> "The Mordax Symphony was composed by ...", session 36).
        said = [s.strip() for s in paraphrases if s.strip()]
        notes = [text.strip()] if said else statements_of(text.strip()) or [text.strip()]
        documents = tuple(" ".join([note, *said]) for note in notes)
        with self._lock:
            if self._posted.get(fact_id) != documents:
                self._drop([fact_id])
                self._posted[fact_id] = documents
                for i, (note, document) in enumerate(zip(notes, documents, strict=True)):
                    self._pieces[fact_id, i] = (note, document, frozenset(self._words([document])[0]),
                                                self._named(document))
                self._index, self._found = None, {}  # built again when asked: ms for a thousand

    def keep_only(self, fact_ids: Iterable[str]) -> None:
        live = set(fact_ids)
        with self._lock:
            self._drop([f for f in self._posted if f not in live])

    def _drop(self, fact_ids: Sequence[str]) -> None:
        gone = set(fact_ids) & self._posted.keys()
        if gone:
            for fact_id in gone:
                del self._posted[fact_id]
            self._pieces = {key: piece for key, piece in self._pieces.items() if key[0] not in gone}
            self._index, self._found = None, {}

    def sync(self, live: Iterable[str],
             statements_of: Callable[[Sequence[str]], Sequence[Sequence[str] | None]]) -> None:
        """Hold exactly the facts in `live`, reading the statements (its text, then its paraphrases) of those not
        held yet with `statements_of` (a fact whose record is gone is left out)."""
        live = list(live)
        self.keep_only(live)
        new = [f for f in live if f not in self._posted]
        for fact_id, statements in zip(new, statements_of(new) if new else [], strict=True):
            if statements:
                self.add(fact_id, statements[0], statements[1:])

    def find(self, question: str) -> list[Note]:
        """The notes BM25 ranks first for the question, best first, those under the floor (`min_match`) left out."""
        with self._lock:
            if question not in self._found:
                if len(self._found) >= FOUND_KEPT:  # a service's questions do not repeat much: a bound, not an LRU
                    self._found.clear()
                self._found[question] = self._find(question)
            return list(self._found[question])

    def _find(self, question: str) -> list[Note]:  # under find's lock
        asked = set(self._words([question])[0])
        if not asked or not self._pieces:
            return []
        if self._index is None:
            self._ids = list(self._pieces)
            self._index = bm25s.BM25()
            self._index.index(self._words([self._pieces[key][1] for key in self._ids], ids=True),
                              show_progress=False)
        found, scores = self._index.retrieve([list(asked)], k=min(self.per_question, len(self._ids)),
                                             show_progress=False)
        names = self._names(question)
        particular = self._particular(names)
        out = []
        for i, score in zip(found[0], scores[0], strict=True):
            key = self._ids[int(i)]
            note, _, held, named = self._pieces[key]
            if score > 0 and (not self.min_match or self._holds_enough(held, named, asked, names, particular)):
                out.append(Note(key[0], note))
        return out

    def _holds_enough(self, held: frozenset[str], named: frozenset[str], asked: set[str], names: set[str],
                      particular: set[str]) -> bool:
        """The floor: the question's most particular name if it names anything, and `min_match` of its words; half
        that share where the note names everything the question names (as names, not as a common word: "Which
        city is Elena based in?" finds "My sister Elena lives in Porto.", "What is the capital of New Zealand?"
        does not find "... our new head of finance.")."""
        if particular and not particular & held:
            return False
        share = self.min_match / 2 if names and names <= named else self.min_match
        return len(asked & held) >= share * len(asked)

    def _particular(self, names: set[str]) -> set[str]:
        """Of the question's names, those the fewest notes hold, among the ones any note holds ("Miralnex" of
        "Miralnex River", not "River", which every river's note holds); none held: all of them, so no note has
        one."""
        held_by = {n: sum(n in held for _, _, held, _ in self._pieces.values()) for n in names}
        fewest = min((c for c in held_by.values() if c), default=0)
        return {n for n, c in held_by.items() if c == fewest} if fewest else names

    def _named(self, document: str) -> frozenset[str]:
        """A note's names as the index holds them: its capitalised words, the first one too ("Elena" of "Elena
        lives in Porto"; an opening "The" or "Our" is a stop word), and numbers."""
        return frozenset(self._words([" ".join(key_terms(document) | set(document.split()[:1]))])[0])

    def _names(self, question: str) -> set[str]:
        """The question's names as the index holds them: capitalised words past the first (or a first word that is a
        name), and numbers."""
        return set(self._words([" ".join(key_terms(question))])[0])

    def in_scope(self, question: str, found: Sequence[Note] | None = None) -> bool:
        """Whether the memory answers the question with SMFT_MEMORY_SCOPE=noted: a note is found for it (`found`:
        the notes the caller already found) or it names something a live fact names."""
        return bool(self.find(question) if found is None else found) or self.mentions(question)

    def mentions(self, question: str) -> bool:
        """Whether the question names something a live fact's statements name, as a name (see `_named`): "What is
        the capital of New Zealand?" does not mention "Priya Raman is our new head of finance." (until session 37
        a name held as any word did; of 72 people's statements' questions, 24 generated facts' and 1,000's, and the
        310 probe questions, only two probe questions changed, both to version 0)."""
        with self._lock:
            names = self._names(question)
            return bool(names) and any(not names.isdisjoint(named) for _, _, _, named in self._pieces.values())

    def grounding(self, question: str, notes: Sequence[Note]) -> Grounded:
        """What says whether an answer given `notes` before `question` took something from them: a word of
        theirs (stemmed, stop words left out, a lone digit kept: "2 am") that the question does not hold. Notes
        whose every word the question holds ("Which app has the support email help@starling.io?" and "The
        Starling app's support email is help@starling.io.") leave nothing to tell by: every answer stands. A closed
        question's yes or no stands too ("Is the standup at 9?" -> "Yes."): made again without its notes, it would
        be the model's guess."""
        new = self._terms(" ".join(n.text for n in notes)) - self._terms(question)
        opening = question.split(maxsplit=1)[:1]
        closed = bool(opening) and opening[0].lower() in _CLOSED
        return lambda answer: (not new or (closed and _YES_NO.match(answer) is not None)
                               or not new.isdisjoint(self._terms(answer)))

    def _terms(self, text: str) -> set[str]:
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOP]
        with self._lock:
            return set(self._stemmer.stemWords(words))

    def _words(self, texts: Sequence[str], ids: bool = False):
        """The texts' words as the index counts them (lower case, stop words left out, stemmed): lists of words,
        or with `ids` a bm25s Tokenized to index."""
        return bm25s.tokenize(list(texts), stopwords=STOP_WORDS, stemmer=self._stemmer, return_ids=ids,
                              show_progress=False)

    def chat(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[Note]]:
        """The chat with the notes its last user turn finds in its system turn (added to the chat's own system
        prompt, or a new one first), and those notes; as asked when none is found."""
        last = last_user_turn(messages)
        notes = self.find(messages[last]["content"]) if last is not None else []
        if not notes:
            return messages, []
        return with_system(messages, SYSTEM.format(notes="\n".join(f"- {n.text}" for n in notes))), notes

    def prompt(self, tokenizer, question: str) -> tuple[str, list[Note]]:
        """The question in the chat template with the notes it finds in a system turn before it (none: as asked,
        the same text as `chat_prompt`), and those notes."""
        messages, notes = self.chat([{"role": "user", "content": question}])
        return conversation_prompt(tokenizer, messages), notes


def with_system(messages: list[dict[str, str]], system: str) -> list[dict[str, str]]:
    """The chat with `system` added to its own system prompt, or put first as a new one."""
    if messages and messages[0].get("role") == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{system}"}, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


def unnoted(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The chat as `Notes.chat` puts it with its notes left out (what context-aware decoding, model/contrast.py,
    contrasts the noted prompt with: the same instruction, no notes)."""
    return with_system(messages, BRIEFLY)
