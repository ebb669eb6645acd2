"""`smft teach`, `smft teach-document` and `smft ask`: a running API's client."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _http(args: argparse.Namespace, method: str, path: str, body: Any | None = None) -> Any:
    import httpx

    token = _token(args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.request(method, f"{args.url.rstrip('/')}{path}", json=body, headers=headers, timeout=120)
    if r.status_code >= 400:
        raise SystemExit(f"HTTP {r.status_code}: {r.text}")
    return r.json()


def _token(args: argparse.Namespace) -> str | None:
    """From --token-file, else SMFT_API_TOKEN (a --token on the command line is visible to every local user
    in `ps`, so it is only a last resort)."""
    import os
    from pathlib import Path

    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    return args.token or os.environ.get("SMFT_API_TOKEN") or None


def cmd_teach(args: argparse.Namespace) -> int:
    fact: dict[str, Any] = {"text": args.text, "paraphrases": args.paraphrase or []}
    if args.question:
        fact.update(question=args.question, answer=args.answer)
    if args.replaces:
        fact.update(replaces=args.replaces)
    print(json.dumps(_http(args, "POST", "/v1/facts", fact), indent=2))
    return 0


def cmd_teach_document(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    body = {"title": args.title or (Path(args.file).name if args.file != "-" else "stdin"), "text": text}
    print(json.dumps(_http(args, "POST", "/v1/documents", body), indent=2))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    body = {"question": args.question, "max_new_tokens": args.max_new_tokens}
    if args.after_fact:
        body.update(after_fact=args.after_fact, wait_s=60)
    print(json.dumps(_http(args, "POST", "/v1/query", body), indent=2))
    return 0


def register(sub: Any) -> None:
    for name, fn in (("teach", cmd_teach), ("teach-document", cmd_teach_document), ("ask", cmd_ask)):
        sp = sub.add_parser(name, help=f"{name} through a running API")
        sp.add_argument("--url", default="http://127.0.0.1:8000")
        sp.add_argument("--token-file", help="a file holding the API token (default: SMFT_API_TOKEN)")
        sp.add_argument("--token", help="the API token itself: visible to other local users in `ps`; prefer "
                                        "SMFT_API_TOKEN or --token-file")
        sp.set_defaults(fn=fn)
        if name == "teach":
            sp.add_argument("text")
            sp.add_argument("--paraphrase", action="append")
            sp.add_argument("--question")
            sp.add_argument("--answer")
            sp.add_argument("--replaces", help="id of a fact this one corrects (it is taken back)")
        elif name == "teach-document":
            sp.add_argument("file", help="a text file, or - for standard input")
            sp.add_argument("--title", help="default: the file's name")
        else:
            sp.add_argument("question")
            sp.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=32)
            sp.add_argument("--after-fact", dest="after_fact")
