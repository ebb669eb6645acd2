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

from model.prompting import last_user_turn
from model.questions import names_of


def typed_in_lower_case(text: str) -> bool:
    return any(c.isalpha() for c in text) and not any(c.isupper() for c in text)


_WORD = re.compile(r"\w+")


class TaughtNames:
    """The names of the live facts, kept in step with them, and the lower-case questions they recase."""

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, ...]] = {}  # fact id -> its names
        # lower-case words of a name -> the words as taught; None: to be built again from `_names`
        self._cased: dict[tuple[str, ...], tuple[str, ...]] | None = None
        self._longest = 0  # words in the longest name

    def __len__(self) -> int:
        return len(self._names)

    def add(self, fact_id: str, text: str) -> None:
        names = tuple(n for n in names_of(text) if not any(c.isdigit() for c in n))
        if self._names.get(fact_id) != names:
            self._names[fact_id] = names
            self._cased = None

    def keep_only(self, fact_ids: Iterable[str]) -> None:
        live = set(fact_ids)
        for gone in [f for f in self._names if f not in live]:
            del self._names[gone]
            self._cased = None

    def sync(self, live: Iterable[str], texts_of: Callable[[Sequence[str]], Sequence[str | None]]) -> None:
        """Hold exactly the facts in `live`, reading the texts of those not held yet with `texts_of`."""
        live = list(live)
        self.keep_only(live)
        new = [f for f in live if f not in self._names]
        for fact_id, text in zip(new, texts_of(new) if new else [], strict=True):
            self.add(fact_id, text or "")

    def _table(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        if self._cased is None:
            # One casing per name; the first fact to teach it keeps it (a later "MIRA quell" does not win).
            self._cased = {}
            for names in self._names.values():
                for name in names:
                    words = tuple(_WORD.findall(name))
                    self._cased.setdefault(tuple(w.lower() for w in words), words)
            self._longest = max(map(len, self._cased), default=0)
        return self._cased

    def recase(self, question: str) -> str:
        """`question` with the taught names' capitals back, when it was typed all in lower case. Names are
        looked up by their words, longest first ("port orrin" is one name, not "port" and then "orrin"), so
        the time does not grow with the number of facts."""
        if not typed_in_lower_case(question):
            return question
        cased = self._table()
        words = list(_WORD.finditer(question))
        out, at, i = [], 0, 0
        while i < len(words):
            for n in range(min(self._longest, len(words) - i), 0, -1):
                found = cased.get(tuple(m.group(0) for m in words[i:i + n]))
                if found is not None:
                    for m, word in zip(words[i:i + n], found, strict=True):
                        out += [question[at:m.start()], word]
                        at = m.end()
                    i += n
                    break
            else:
                i += 1
        return "".join(out) + question[at:]

    def recase_chat(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The chat with its last user turn recased (the question being asked now)."""
        last = last_user_turn(messages)
        if last is None:
            return messages
        out = list(messages)
        out[last] = {**messages[last], "content": self.recase(messages[last]["content"])}
        return out

