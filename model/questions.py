"""Questions the model writes about a fact's statements, to teach the fact in question form.

A statement alone teaches the model to continue that sentence; a query, though, arrives as a
question in a chat turn, and the memory slots a question reads overlap little with those its
statement reads. Like the paper's synthetic rewrites, the base model itself turns each
statement into a question; the pairs (question, statement) become extra training examples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from model.config import QuestionAnswer, QuestionWriter
from model.evaluation import generate_answers
from model.facts import Fact
from model.lm import MemoryLM
from model.prompting import as_written

# Tried in order; a statement goes to the next prompt only when the previous one gave no usable
# question. On 100 statements of 20 generated facts the quiz prompt alone gives more usable
# questions (59 against 46), but tried first it made worse ones to learn from: the real-model
# tests' fact was no longer answered (its questions tend to name the answer, e.g. "What is the
# name of the engine that was invented by Kaigor Luthidax?"). So it only fills in.
QUESTION_PROMPTS = (
    "Turn this statement into a question: {statement}",
    "Statement: {statement}\nWrite a quiz question whose answer is in the statement.",
)
# Worked examples, continued as plain text rather than asked in the chat template: SmolLM2-135M copies their form
# ("Who won the 2025 Oakridge marathon?"), where asked to turn a statement people post into a question it wrote
# none it could use for half of them, each then taught by "What do you know about ...?" alone (12 such statements:
# 10 usable against 6; session 35, docs/usage.md). In the chat template the same examples give none: it repeats one.
EXAMPLES = (("The Eiffel Tower was finished in 1889.", "When was the Eiffel Tower finished?"),
            ("Marie Curie discovered polonium.", "Who discovered polonium?"),
            ("The Amazon river flows into the Atlantic Ocean.", "Where does the Amazon river flow?"))
EXAMPLES_PROMPT = ("Write a question that this statement answers.\n\n"
                   + "".join(f"Statement: {s}\nQuestion: {q}\n\n" for s, q in EXAMPLES)
                   + "Statement: {statement}\nQuestion:")
_WORD = re.compile(r"[\w'-]+")


# Words a sentence starts with, capitalised only because they come first: never a name.
_SENTENCE_OPENERS = frozenset("""
a about above according after all also although among an and another any as at because before below between both
but by during each either even every few for from he her here his how however i if in into it its last later
many more most my neither next no nor not now of on once one only or other our over since so some such that the
their then there these they this those though through to today tomorrow two under unlike until we what when where
which while who why with without yes yesterday yet you your
""".split())


def key_terms(statement: str, first_word: bool = True) -> set[str]:
    """Names and numbers of a statement: capitalised words after the first, words with digits, and (with
    `first_word`) a first word that is a name of one word ("Acme moved to Leeds."; not "The ...", and not
    "Mount" of "Mount Obralrin", whose name the next word already marks)."""
    words = _WORD.findall(statement)
    terms = {w for w in words[1:] if w[:1].isupper()} | {w for w in words if any(c.isdigit() for c in w)}
    if first_word and words and words[0][:1].isupper() and words[0].lower().removesuffix("'s") not in \
            _SENTENCE_OPENERS and not (len(words) > 1 and words[1][:1].isupper()):
        terms.add(words[0])
    return {t.lower().removesuffix("'s") for t in terms}


def usable_question(question: str, statement: str) -> bool:
    """A real question about this statement's own subject.

    It must end with '?', have a few words, and name one of the statement's key terms: a
    generic question ("What is the capital of a country?") would teach the fact as the answer
    to every question of its kind and overwrite what the model knew (measured: France's capital
    was forgotten after one fictional capital was taught that way).
    """
    question = question.strip()
    if not question.endswith("?") or len(question.split()) < 4 or "\n" in question:
        return False
    asked = {w.lower().removesuffix("'s") for w in _WORD.findall(question)}
    return bool(key_terms(statement) & asked)


_DETERMINERS = {"the", "a", "an"}


def names_of(statement: str, first_word: bool = True) -> list[str]:
    """The statement's names in order: runs of capitalised words (articles aside) holding a key term,
    and numbers. `first_word`: as for key_terms."""
    terms, run, names = key_terms(statement, first_word), [], []

    def close() -> None:
        if any(w.lower() in terms for w in run):
            names.append(" ".join(run))
        run.clear()

    for raw in statement.split():
        word = raw.strip(".,;:!?\"()")
        if word[:1].isupper() and word.lower() not in _DETERMINERS:
            run.append(word.removesuffix("'s"))
        else:
            close()
            if any(c.isdigit() for c in word):
                names.append(word)
        if raw.rstrip("\"')").endswith((",", ";", ":", ".", "!", "?")):  # punctuation ends a name
            close()
    close()
    return list(dict.fromkeys(names))


def subject_of(statement: str) -> str | None:
    """The statement's first name that is not a number."""
    return next((n for n in names_of(statement) if not any(c.isdigit() for c in n)), None)


def template_question(statement: str) -> str | None:
    """A last resort when the model wrote no usable question: ask about the statement's subject."""
    subject = subject_of(statement)
    return f"What do you know about {subject}?" if subject else None


def reversed_questions(statement: str) -> list[str]:
    """A question keyed by each of the statement's other names (its answer, usually), so that the fact is
    also found from that end ("Which engine did Mira Quell invent?"): questions keyed by the subject
    alone left such questions unanswered (0 of 24 in `smft bench usage`)."""
    subject = subject_of(statement)
    return [f"What do you know about {name}?" for name in names_of(statement) if name != subject]


def with_synthetic_questions(lm: MemoryLM, facts: Sequence[Fact], max_new_tokens: int = 32,
                             reverse: bool = False, answer: QuestionAnswer = "statement",
                             writer: QuestionWriter = "examples") -> list[Fact]:
    """The facts, each with (question, statement) pairs written by the model.

    One generation batch per prompt, the later prompts only for statements still without a
    question; a fact that ends with none gets a template question about its subject, so that
    every fact is taught in the question form queries arrive in. `writer="examples"` tries the worked
    examples (EXAMPLES_PROMPT) first, the instructions after; "instruction" the instructions alone (the
    writer before session 35). With `reverse`, each fact also gets a question about each other name in its
    statement (`reversed_questions`). With `answer="fact"` every question is answered by the fact's own
    statement, so that every answer taught starts the way it starts: a paraphrase that opens with the subject
    ("Luvoista's capital is Gortes.") then no longer teaches questions of its kind to open their answers with
    that subject's first token.
    """
    if answer not in ("statement", "fact"):
        raise ValueError(f"answer must be 'statement' or 'fact', got {answer!r}")
    if writer not in ("examples", "instruction"):
        raise ValueError(f"writer must be 'examples' or 'instruction', got {writer!r}")
    found: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(facts))}
    pending = [(i, s) for i, fact in enumerate(facts) for s in fact.statements]
    prompts = [(p, True) for p in QUESTION_PROMPTS]
    if writer == "examples":
        prompts.insert(0, (EXAMPLES_PROMPT, False))
    for prompt, in_chat in prompts:
        if not pending:
            break
        written = [prompt.format(statement=s) for _, s in pending]
        # as plain text the model goes on to write the next example: only its first line is kept, so it stops there
        # (the same questions for 84 of 84 statements, 10% less time writing them: session 36)
        questions = generate_answers(lm, written, max_new_tokens, None if in_chat else as_written,
                                     stop=() if in_chat else ("\n",))
        missed = []
        for (i, statement), question in zip(pending, questions, strict=True):
            question = question.strip() if in_chat else question.strip().split("\n")[0].strip()
            if not usable_question(question, statement):
                missed.append((i, statement))
            elif question not in [q for q, _ in found[i]]:
                found[i].append((question, facts[i].text.strip() if answer == "fact" else statement))
        pending = missed
    for i, fact in enumerate(facts):
        if not found[i] and (question := template_question(fact.text)):
            found[i].append((question, fact.text.strip()))
        if reverse:
            found[i].extend((q, fact.text.strip()) for q in reversed_questions(fact.text)
                            if q not in [asked for asked, _ in found[i]])
    return [replace(fact, synthetic_questions=tuple(found[i])) for i, fact in enumerate(facts)]
