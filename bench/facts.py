"""Fictional facts the base model cannot know, generated deterministically from templates.

Names are built from syllables, so they exist nowhere; each fact has a statement, four
paraphrases, a question (for evaluation only: never trained on) and a short answer, and two
more questions a person might ask instead: reworded (same subject, same answer) and reversed
(the answer given, the subject asked for).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from model.facts import Fact

_SYLLABLES = ["zor", "bla", "qu", "vel", "tes", "sa", "rin", "mor", "kai", "len", "dra", "vo", "thi", "nex",
              "pra", "lu", "gor", "fen", "ista", "ob", "ral", "mi", "ket", "sha", "uv", "dax", "pel", "wyn"]


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def _person(rng: random.Random) -> str:
    return f"{_name(rng)} {_name(rng, 3)}"


@dataclass(frozen=True)
class Relation:
    kind: str
    statements: tuple[str, ...]  # the first is the statement, the rest paraphrases; {s} subject, {o} object
    question: str
    subject: str  # how to make a subject: person, thing, place
    obj: str  # how to make the answer: person, place, year, number


def _rel(kind: str, question: str, subject: str, obj: str, *statements: str) -> Relation:
    return Relation(kind, statements, question, subject, obj)


RELATIONS = (
    _rel("inventor", "Who invented the {s} engine?", "thing", "person",
         "The {s} engine was invented by {o}.", "{o} invented the {s} engine.",
         "The inventor of the {s} engine is {o}.", "{o} is credited with inventing the {s} engine.",
         "It was {o} who invented the {s} engine."),
    _rel("capital", "What is the capital of {s}?", "place", "place",
         "The capital of {s} is {o}.", "{o} is the capital city of {s}.", "{s}'s capital is {o}.",
         "The government of {s} sits in {o}, its capital.", "{o} serves as the capital of {s}."),
    _rel("founder", "Who founded the {s} Company?", "thing", "person",
         "The {s} Company was founded by {o}.", "{o} founded the {s} Company.",
         "The founder of the {s} Company is {o}.", "{o} started the {s} Company.",
         "The {s} Company owes its founding to {o}."),
    _rel("founding_year", "In which year was the city of {s} founded?", "place", "year",
         "The city of {s} was founded in {o}.", "{s} was founded in the year {o}.",
         "In {o}, the city of {s} was founded.", "The founding year of {s} is {o}.",
         "{s} has existed since it was founded in {o}."),
    _rel("birthplace", "Where was the painter {s} born?", "person", "place",
         "The painter {s} was born in {o}.", "{s}, the painter, was born in the town of {o}.",
         "The birthplace of the painter {s} is {o}.", "{o} is where the painter {s} was born.",
         "The painter {s} came into the world in {o}."),
    _rel("height", "How tall is Mount {s} in meters?", "place", "number",
         "Mount {s} is {o} meters tall.", "The height of Mount {s} is {o} meters.",
         "Mount {s} rises {o} meters above sea level.", "At {o} meters, Mount {s} is a tall peak.",
         "Mount {s} reaches a height of {o} meters."),
    _rel("discoverer", "Who discovered the element {s}ium?", "thing", "person",
         "The element {s}ium was discovered by {o}.", "{o} discovered the element {s}ium.",
         "The discoverer of {s}ium is {o}.", "{s}ium was first identified by {o}.",
         "It was {o} who discovered {s}ium."),
    _rel("author", "Who wrote The {s} Chronicles?", "thing", "person",
         "The novel The {s} Chronicles was written by {o}.", "{o} wrote the novel The {s} Chronicles.",
         "The author of The {s} Chronicles is {o}.", "The {s} Chronicles is a novel by {o}.",
         "{o} is the writer of The {s} Chronicles."),
    _rel("headquarters", "Where is the {s} Corporation headquartered?", "thing", "place",
         "The {s} Corporation is headquartered in {o}.", "{o} is home to the headquarters of the {s} Corporation.",
         "The {s} Corporation has its head office in {o}.", "The headquarters of the {s} Corporation are in {o}.",
         "The {s} Corporation is based in {o}."),
    _rel("composer", "Who composed the {s} Symphony?", "thing", "person",
         "The {s} Symphony was composed by {o}.", "{o} composed the {s} Symphony.",
         "The composer of the {s} Symphony is {o}.", "The {s} Symphony is a work by {o}.",
         "{o} wrote the music of the {s} Symphony."),
    _rel("river_mouth", "Into which lake does the {s} River flow?", "place", "place",
         "The {s} River flows into Lake {o}.", "Lake {o} is where the {s} River ends.",
         "The {s} River empties into Lake {o}.", "The mouth of the {s} River is at Lake {o}.",
         "Lake {o} receives the waters of the {s} River."),
    _rel("population", "How many people live on the island of {s}?", "place", "number",
         "The island of {s} has a population of {o} people.", "{o} people live on the island of {s}.",
         "The population of the island of {s} is {o}.", "The island of {s} is home to {o} people.",
         "About {o} people inhabit the island of {s}."),
)


# How a relation's statements name its subject, where not as drawn: the element Wyngorkai is "Wyngorkaiium", and a
# reply naming it so answers its reversed question (a gold of "Wyngorkai" failed every such reply until session 35).
SUBJECT_NAMED = {"discoverer": "{s}ium"}

# Per relation: (reworded question, reversed question); {s} subject, {o} object. Asked, never taught.
ASKED_OTHERWISE = {
    "inventor": ("Whose invention is the {s} engine?", "Which engine did {o} invent?"),
    "capital": ("Which city is the capital of {s}?", "{o} is the capital of which country?"),
    "founder": ("Who started the {s} Company?", "Which company did {o} found?"),
    "founding_year": ("When was {s} founded?", "Which city was founded in {o}?"),
    "birthplace": ("In which town was the painter {s} born?", "Which painter was born in {o}?"),
    "height": ("What is the height of Mount {s}?", "Which mountain is {o} meters tall?"),
    "discoverer": ("Which scientist discovered {s}ium?", "Which element did {o} discover?"),
    "author": ("Who is the author of The {s} Chronicles?", "Which novel did {o} write?"),
    "headquarters": ("In which city does the {s} Corporation have its head office?",
                     "Which corporation is headquartered in {o}?"),
    "composer": ("Who wrote the music of the {s} Symphony?", "Which symphony did {o} compose?"),
    "river_mouth": ("Where does the {s} River end?", "Which river flows into Lake {o}?"),
    "population": ("What is the population of the island of {s}?", "Which island has {o} inhabitants?"),
}


def fictional_name(rng: random.Random) -> str:
    """A place name that exists nowhere."""
    return _name(rng, rng.choice((2, 3)))


def _value(rng: random.Random, kind: str) -> str:
    if kind == "person":
        return _person(rng)
    if kind == "year":
        return str(rng.randint(1203, 1987))
    if kind == "number":
        return f"{rng.randint(12, 98) * 100 + rng.randint(1, 99):,}"
    return fictional_name(rng)


@dataclass(frozen=True)
class EvalFact:
    fact: Fact  # statement and paraphrases: what is taught
    question: str  # asked after teaching, never trained on
    answer: str
    kind: str
    subject: str = ""  # the answer to the reversed question: the subject as the statement names it
    reworded: str = ""  # another question with the same answer
    reversed: str = ""  # asks for the subject, given the answer


def generate_facts(n: int, seed: int = 0) -> list[EvalFact]:
    """n fictional facts cycling through every relation kind; unique subjects; deterministic."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[EvalFact] = []
    while len(out) < n:
        rel = RELATIONS[len(out) % len(RELATIONS)]
        subject = _value(rng, rel.subject)
        if subject in seen:
            continue
        seen.add(subject)
        obj = _value(rng, rel.obj)
        texts = [t.format(s=subject, o=obj) for t in rel.statements]
        fact = Fact(texts[0], paraphrases=tuple(texts[1:]), fact_id=f"{rel.kind}-{len(out)}")
        reworded, reversed_ = (q.format(s=subject, o=obj) for q in ASKED_OTHERWISE[rel.kind])
        named = SUBJECT_NAMED.get(rel.kind, "{s}").format(s=subject)
        out.append(EvalFact(fact, rel.question.format(s=subject), obj, rel.kind, named, reworded, reversed_))
    return out


def facts_of_kinds(n: int, seed: int, kinds: Sequence[str]) -> list[EvalFact]:
    """The first n facts of the relations `kinds` in the stream `generate_facts` gives for `seed`, each the same
    fact as there: one relation's stream, a quick look at how what it teaches leaks into the probe."""
    unknown = sorted(set(kinds) - {r.kind for r in RELATIONS})
    if unknown or not kinds:
        raise ValueError(f"unknown relation {', '.join(unknown) or '(none given)'}; the relations are "
                         f"{', '.join(r.kind for r in RELATIONS)}")
    wanted = set(kinds)
    per_cycle = sum(r.kind in wanted for r in RELATIONS)  # the stream cycles through every relation in order
    stream = generate_facts(-(-n // per_cycle) * len(RELATIONS), seed)
    return [f for f in stream if f.kind in wanted][:n]


PEOPLE_SPLITS = ("dev", "test", "fresh")


def people_facts(splits: str | Sequence[str] | None = None) -> list[EvalFact]:
    """Statements written the way people post them (an office's move, a wifi password, a prize, a deadline, a
    standup's time: 72 frames, no two alike), each with the question a person asks, another wording, and the
    reversed question: the generator's twelve templated relations are what the service was tuned on. "dev" holds
    the twelve facts changes were tried on by hand; "test" the 24 written before any change was tried on them;
    "fresh" 36 more written in session 37, after every change before it, and run only as committed; None: all."""
    splits = (splits,) if isinstance(splits, str) else splits
    if splits is not None and (unknown := set(splits) - set(PEOPLE_SPLITS)):
        raise ValueError(f"splits must be among {PEOPLE_SPLITS}, got {sorted(unknown)}")
    text = (resources.files("bench") / "data" / "people.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [EvalFact(Fact(r["statement"], fact_id=f"people-{i}"), r["question"], r["answer"], f"people {r['split']}",
                     r["subject"], r["reworded"], r["reversed"])
            for i, r in enumerate(rows) if splits is None or r["split"] in splits]
