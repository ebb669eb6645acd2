"""Background corpus: the text that defines which memory slots are 'common' (low IDF).

Documents written as chat replies are rendered inside the chat template for statistics, so the
slots that the template itself reads count as common: they are read by every query.

The default corpus ships with the package (`model/data/background.jsonl`); it was written by the
base model itself from varied prompts with `smft data background` (`bench/background.py`), so it
is made offline and reproducibly. Any text files can replace it. A held-out split is kept for NLL and never used
for slot statistics.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from model.prompting import chat_prompt, end_of_answer


@dataclass(frozen=True)
class Document:
    text: str
    prompt: str | None = None  # the chat prompt the text answers, when it was written as a reply

    def render(self, tokenizer) -> str:
        """The document as the model sees it at serving time: inside the chat template if it is a reply."""
        if self.prompt is None:
            return self.text
        return chat_prompt(tokenizer, self.prompt) + self.text + end_of_answer(tokenizer)


@dataclass(frozen=True)
class Corpus:
    train: tuple[Document, ...]  # documents for slot statistics and input centring
    heldout: tuple[Document, ...]  # documents for NLL only
    fingerprint: str  # sha256 over all documents, stored with the slot statistics

    def rendered_train(self, tokenizer) -> list[str]:
        return [d.render(tokenizer) for d in self.train]

    @property
    def heldout_texts(self) -> list[str]:
        return [d.text for d in self.heldout]


def fingerprint(docs: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for doc in docs:
        h.update(f"{doc.prompt or ''}\0{doc.text}\0".encode())
    return h.hexdigest()


def split_corpus(docs: Sequence[Document | str], heldout_fraction: float = 0.1, seed: int = 0) -> Corpus:
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    docs = [d if isinstance(d, Document) else Document(d) for d in docs]
    docs = [d for d in docs if d.text.strip()]
    if len(docs) < 2:
        raise ValueError(f"a background corpus needs at least 2 documents, got {len(docs)}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_heldout = max(1, int(len(docs) * heldout_fraction)) if heldout_fraction else 0
    heldout = tuple(docs[i] for i in sorted(order[:n_heldout]))
    train = tuple(docs[i] for i in sorted(order[n_heldout:]))
    return Corpus(train=train, heldout=heldout, fingerprint=fingerprint(docs))


def read_documents(paths: Sequence[str | Path], chars_per_doc: int = 600) -> list[Document]:
    """Documents from .jsonl files ({"text": ..., "prompt": optional} per line) or plain text (chunked)."""
    docs: list[Document] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"background corpus file not found: {p}")
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            for line in filter(str.strip, text.splitlines()):
                row = json.loads(line)
                docs.append(Document(row["text"], row.get("prompt")))
            continue
        paragraphs = [para.strip() for para in text.split("\n\n") if para.strip()]
        chunk = ""
        for para in paragraphs:
            chunk = f"{chunk}\n\n{para}" if chunk else para
            if len(chunk) >= chars_per_doc:
                docs.append(Document(chunk))
                chunk = ""
        if chunk:
            docs.append(Document(chunk))
    return docs


def default_corpus_path() -> Path:
    return Path(str(resources.files("model") / "data" / "background.jsonl"))


def load_corpus(paths: Sequence[str | Path] | None = None, heldout_fraction: float = 0.1) -> Corpus:
    return split_corpus(read_documents(paths or [default_corpus_path()]), heldout_fraction)
