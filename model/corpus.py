"""Background corpus: the text that defines which memory slots are 'common' (low IDF).

Documents written as chat replies are rendered inside the chat template for statistics, so the
slots that the template itself reads count as common: they are read by every query.

The default corpus ships with the package (`model/data/background.jsonl`); it was written by the
base model itself from varied prompts with `smft data background`, so it is made offline and
reproducibly. Any text files can replace it. A held-out split is kept for NLL and never used
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

import torch
from tqdm import tqdm

from model.prompting import chat_prompt, end_of_answer

_TOPICS = [
    "the history of Rome", "how volcanoes form", "photosynthesis", "the water cycle", "jazz music",
    "the French Revolution", "black holes", "the human heart", "machine learning", "ancient Egypt",
    "the Olympic Games", "coffee", "the Amazon rainforest", "electric cars", "the printing press",
    "honey bees", "the Moon landing", "chess", "earthquakes", "the Renaissance", "vaccines",
    "the Great Wall of China", "climate change", "the Internet", "dinosaurs", "the stock market",
    "Shakespeare", "the solar system", "bread baking", "the immune system", "World War II",
    "the Pacific Ocean", "democracy", "gravity", "the piano", "tea", "the Roman Empire's roads",
    "antibiotics", "the Sahara desert", "football", "DNA", "the steam engine", "penguins",
    "the Silk Road", "rainbows", "mathematics", "the brain", "recycling", "the Eiffel Tower",
    "volleyball", "the camera", "sleep", "Mount Everest", "the cell", "money", "the alphabet",
    "bicycles", "the Nile", "electricity", "friendship",
]
_STYLES = [
    "Write a short paragraph about {topic}.",
    "Explain {topic} to a child.",
    "Give three interesting facts about {topic}.",
    "Write a short story that involves {topic}.",
    "What are the main ideas behind {topic}?",
    "Describe {topic} in simple words.",
]


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


def background_prompts(n_docs: int, seed: int = 0) -> list[str]:
    prompts = [style.format(topic=t) for t in _TOPICS for style in _STYLES]
    random.Random(seed).shuffle(prompts)
    return [prompts[i % len(prompts)] for i in range(n_docs)]


@torch.no_grad()
def generate_background(lm, n_docs: int = 320, max_new_tokens: int = 128, batch_size: int = 16,
                        seed: int = 0) -> list[Document]:
    """Documents written by the model itself (sampled, seeded), one per varied prompt."""
    from model.evaluation import left_padded

    torch.manual_seed(seed)
    prompts = background_prompts(n_docs, seed)
    docs: list[Document] = []
    for start in tqdm(range(0, n_docs, batch_size), desc="background corpus", unit="batch"):
        ids, mask = left_padded(lm, [chat_prompt(lm.tokenizer, p) for p in prompts[start:start + batch_size]])
        out = lm.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
            temperature=0.8, top_p=0.95, pad_token_id=lm.tokenizer.pad_token_id,
        )
        for prompt, row in zip(prompts[start:start + batch_size], out, strict=True):
            text = lm.tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True).strip()
            if text:
                docs.append(Document(text, prompt))
    return docs


def write_documents(docs: Sequence[Document], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": d.prompt, "text": d.text} if d.prompt else {"text": d.text} for d in docs]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
