"""A statement turned around one of its other names, so that a question asked from that end has an answer
that starts where it starts.

"Which engine did Kaigor Luthidax invent?" is answered by "Kaigor Luthidax invented the Uvnexbla engine.", not
by the statement "The Uvnexbla engine was invented by Kaigor Luthidax.": taught only the statement, the model
opens such answers in its own frame ("The engine that was invented by Kaigor Luthidax is ...") and the fact is
not found (docs/usage.md, session 19). SmolLM2-135M does not write these sentences when asked to, so two
common English shapes are turned by rule; any other statement is left as it is (None).
"""

from __future__ import annotations

import re

from lemminflect import getInflection, getLemma

# "X was invented by N[ in 1931]." -> "N invented X[ in 1931]." (a passive with its agent). A clause after the
# name is not carried over: turned, it would hang on another noun ("..., who bought it in 1990").
_PASSIVE = re.compile(r"^(?P<patient>.+?) (?P<aux>was|were|is|are) (?P<verb>[a-z]+) by (?P<agent>[^,;]+?)"
                      r"(?P<rest>(?: in \d[\d,]*)?)[.!]?$")
# "The capital of X is N." -> "N is the capital of X." (a definite description equated to a name)
_COPULA = re.compile(r"^(?P<the>The|the) (?P<description>.+?) (?P<aux>is|was) (?P<name>[^,;]+?)[.!]?$")
_PAST = {"was": "VBD", "were": "VBD", "is": "VBZ", "are": "VBZ"}


def _lower_first(phrase: str) -> str:
    """A sentence's opening article in running text ("The Uvnexbla engine" -> "the Uvnexbla engine")."""
    first, _, rest = phrase.partition(" ")
    return f"{first.lower()} {rest}" if first in ("The", "A", "An") else phrase


def _active(participle: str, aux: str) -> str | None:
    lemmas = getLemma(participle, upos="VERB")
    forms = getInflection(lemmas[0], tag=_PAST[aux]) if lemmas else ()
    return forms[0] if forms else None


def turned_around(statement: str, name: str) -> str | None:
    """The statement opening with `name`, one of its names other than its subject, or None when its shape is
    not one this module turns: a passive whose agent is `name`, or "The ... is `name`"."""
    text = statement.strip()
    passive = _PASSIVE.match(text)
    if passive and passive["agent"] == name and (verb := _active(passive["verb"], passive["aux"])):
        return f"{name} {verb} {_lower_first(passive['patient'])}{passive['rest']}."
    copula = _COPULA.match(text)
    if copula and copula["name"] == name:
        return f"{name} {copula['aux']} the {copula['description']}."
    return None
