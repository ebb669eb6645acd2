"""`smft data background` and `smft data probe`: make the offline data sets that ship with the package."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_data_background(args: argparse.Namespace) -> int:
    from bench.background import generate_background, write_documents
    from model.corpus import default_corpus_path
    from model.lm import MemoryLM

    lm = MemoryLM.load(args.model, device=args.device)
    docs = generate_background(lm, n_docs=args.docs, seed=args.seed)
    out = Path(args.out) if args.out else default_corpus_path()
    write_documents(docs, out)
    print(f"wrote {len(docs)} documents to {out}")
    return 0


def cmd_data_probe(args: argparse.Namespace) -> int:
    from model.lm import MemoryLM
    from model.probe import curate, data_path, read_probe, write_probe

    lm = MemoryLM.load(args.model, device=args.device)  # zero memory: exactly the base model
    candidates = read_probe(data_path("probe_candidates.jsonl"))
    kept = curate(lm, candidates)
    out = data_path("retention_probe.jsonl")
    write_probe(kept, out)
    print(f"kept {len(kept)} of {len(candidates)} candidates in {out}")
    return 0


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="make the offline data sets").add_subparsers(dest="what", required=True)
    bg = data.add_parser("background", help="regenerate the default background corpus with the base model")
    bg.add_argument("--model", default="smollm2")
    bg.add_argument("--device", default="cpu")
    bg.add_argument("--docs", type=int, default=320)
    bg.add_argument("--seed", type=int, default=0)
    bg.add_argument("--out")
    bg.set_defaults(fn=cmd_data_background)

    probe = data.add_parser("probe", help="curate the retention probe: candidates the base model answers correctly")
    probe.add_argument("--model", default="smollm2")
    probe.add_argument("--device", default="cpu")
    probe.set_defaults(fn=cmd_data_probe)
