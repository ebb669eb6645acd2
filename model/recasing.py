"""Questions typed in lower case read the taught names as they were taught.

The memory is keyed by tokens, and "zorblax" is not the same tokens as "Zorblax": of 24 bare
statements taught in the service's batches, 24 were answered by their question as written and
15 by the same question lower-cased without its question mark. People do type in lower case,
so a question with no capital letter at all gets back the capitals of every name the live facts
hold (the names `names_of` finds, longest first, whole words only): 24 of 24 then. Giving it a
first capital and its question mark as well changed nothing more (24 of 24), so the rest of
what was typed is left alone, and a question with any capital in it is the asker's own casing
and is not touched at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from model.questions import names_of


def typed_in_lower_case(text: str) -> bool:
    return any(c.isalpha() for c in text) and not any(c.isupper() for c in text)


class TaughtNames:
    """The names of the live facts, kept in step with them, and the lower-case questions they recase."""

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, ...]] = {}  # fact id -> its names
        self._pattern: re.Pattern[str] | None = None
        self._cased: dict[str, str] = {}  # lower-case name -> as taught

    def __len__(self) -> int:
        return len(self._names)

    def add(self, fact_id: str, text: str) -> None:
        names = tuple(n for n in names_of(text) if not any(c.isdigit() for c in n))
        if self._names.get(fact_id) != names:
            self._names[fact_id] = names
            self._pattern = None

    def keep_only(self, fact_ids: Iterable[str]) -> None:
        live = set(fact_ids)
        for gone in [f for f in self._names if f not in live]:
            del self._names[gone]
            self._pattern = None

    def sync(self, live: Iterable[str], texts_of: Callable[[Sequence[str]], Sequence[str | None]]) -> None:
        """Hold exactly the facts in `live`, reading the texts of those not held yet with `texts_of`."""
        live = list(live)
        self.keep_only(live)
        new = [f for f in live if f not in self._names]
        for fact_id, text in zip(new, texts_of(new) if new else [], strict=True):
            self.add(fact_id, text or "")

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None:
            # One casing per name; the first fact to teach it keeps it (a later "MIRA quell" does not win).
            self._cased = {}
            for names in self._names.values():
                for name in names:
                    self._cased.setdefault(name.lower(), name)
            if self._cased:  # longest first, so "port orrin" is one name, not "port" and then "orrin"
                alternatives = sorted(self._cased, key=len, reverse=True)
                self._pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, alternatives)) + r")\b")
        return self._pattern

    def recase(self, question: str) -> str:
        """`question` with the taught names' capitals back, when it was typed all in lower case."""
        if not typed_in_lower_case(question):
            return question
        pattern = self._compiled()
        return pattern.sub(lambda m: self._cased[m.group(0)], question) if pattern else question

    def recase_chat(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The chat with its last user turn recased (the question being asked now)."""
        last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
        if last is None:
            return messages
        out = list(messages)
        out[last] = {**messages[last], "content": self.recase(messages[last]["content"])}
        return out

