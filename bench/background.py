"""The default background corpus, written by the base model itself from varied prompts.

`smft data background` runs it once; the result ships as `model/data/background.jsonl`, so the
service never needs to generate (or download) text at run time.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from model.corpus import Document
from model.evaluation import left_padded
from model.lm import MemoryLM
from model.prompting import chat_prompt

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


def background_prompts(n_docs: int, seed: int = 0) -> list[str]:
    prompts = [style.format(topic=t) for t in _TOPICS for style in _STYLES]
    random.Random(seed).shuffle(prompts)
    return [prompts[i % len(prompts)] for i in range(n_docs)]


@torch.no_grad()
def generate_background(lm: MemoryLM, n_docs: int = 320, max_new_tokens: int = 128, batch_size: int = 16,
                        seed: int = 0) -> list[Document]:
    """Documents written by the model itself (sampled, seeded), one per varied prompt."""
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
