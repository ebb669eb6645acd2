"""The retention probe: general-knowledge questions the base model answers correctly.

`probe_candidates.jsonl` is a broad hand-written list; `smft data probe` runs the base model
(version 0) on it and keeps what it gets right in `retention_probe.jsonl`. Forgetting is then
measured as the drop in F1 on the probe relative to version 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from model.evaluation import contains_answer, generate_answers
from model.lm import MemoryLM


@dataclass(frozen=True)
class ProbeQuestion:
    question: str
    answer: str
    aliases: tuple[str, ...] = ()

    def correct(self, prediction: str) -> bool:
        return any(contains_answer(prediction, a) for a in (self.answer, *self.aliases))


def data_path(name: str) -> Path:
    return Path(str(resources.files("model") / "data" / name))


def read_probe(path: Path | None = None) -> list[ProbeQuestion]:
    rows = (path or data_path("retention_probe.jsonl")).read_text(encoding="utf-8").splitlines()
    return [ProbeQuestion(r["question"], r["answer"], tuple(r.get("aliases", ()))) for r in map(json.loads, rows) if r]


def curate(lm: MemoryLM, candidates: Sequence[ProbeQuestion], batch_size: int = 16,
           max_new_tokens: int = 24) -> list[tuple[ProbeQuestion, str]]:
    """The candidates the model answers correctly, with its answers."""
    kept = []
    for start in tqdm(range(0, len(candidates), batch_size), desc="curating probe", unit="batch"):
        chunk = candidates[start:start + batch_size]
        for q, answer in zip(chunk, generate_answers(lm, [c.question for c in chunk], max_new_tokens), strict=True):
            if q.correct(answer):
                kept.append((q, answer))
    return kept


def write_probe(kept: Sequence[tuple[ProbeQuestion, str]], path: Path) -> None:
    rows = [{"question": q.question, "answer": q.answer, "aliases": list(q.aliases), "base_answer": a}
            for q, a in kept]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
