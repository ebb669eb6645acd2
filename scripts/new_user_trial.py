"""A new user's first session with the running service: a dozen bare sentences posted in one request, then each
asked as written, in the user's own words (often lower case), the other way round, through chat completions with
a system prompt and as the last turn of a chat; six questions the base model knows, before and after; one
correction that names the fact it replaces. The statements were written for this (session 39) and are in no bench.

    .venv/bin/smft serve &      # the README's first command, on a fresh deployment
    .venv/bin/python scripts/new_user_trial.py [--api http://127.0.0.1:8000] [--token TOKEN]

A trial, not a benchmark: one run, a dozen facts; `smft bench usage` measures the same forms at scale.
"""
from __future__ import annotations

import argparse
import time

import httpx

FACTS = [  # (statement, asked, own words, reversed, expected answer, expected subject)
    ("The quarterly all-hands is in the Atrium on Wednesday.", "Where is the quarterly all-hands?",
     "which room do we use for the all-hands", "What happens in the Atrium on Wednesday?", "Atrium", "all-hands"),
    ("Jorge Salas is our new office manager.", "Who is the office manager?",
     "Who manages the office these days?", "What is Jorge Salas's role?", "Jorge Salas", "office manager"),
    ("The staging database lives on host db-stg-04.", "Which host runs the staging database?",
     "where is staging db hosted", "What runs on db-stg-04?", "db-stg-04", "staging"),
    ("Our parental leave policy gives 20 weeks of paid leave.", "How many weeks of paid parental leave do we get?",
     "how long is parental leave", "Which policy gives 20 weeks of paid leave?", "20", "parental"),
    ("The Orla app was built by the Tern Labs team.", "Who built the Orla app?",
     "Which team made Orla?", "What did Tern Labs build?", "Tern Labs", "Orla"),
    ("Mika Tanaka won the Brisby poetry prize in 2024.", "Who won the Brisby poetry prize in 2024?",
     "who took the 2024 Brisby prize", "Which prize did Mika Tanaka win?", "Mika Tanaka", "Brisby"),
    ("The Halcyon river flows into Lake Doran.", "Which lake does the Halcyon river flow into?",
     "Where does the Halcyon end up?", "Which river flows into Lake Doran?", "Doran", "Halcyon"),
    ("Badge renewals are handled by the security desk on floor 2.", "Who handles badge renewals?",
     "where do i renew my badge", "What does the security desk on floor 2 handle?", "security desk", "badge"),
    ("The Velstrand tower is 310 meters tall.", "How tall is the Velstrand tower?",
     "What is the height of the Velstrand tower?", "Which tower is 310 meters tall?", "310", "Velstrand"),
    ("Our on-call rotation switches every Monday at noon.", "When does the on-call rotation switch?",
     "what time does on-call change over", "What switches every Monday at noon?", "Monday", "on-call"),
    ("Dr. Ilse Brandt discovered the Corrin fossil beds in 1978.", "Who discovered the Corrin fossil beds?",
     "Who found the Corrin fossils?", "What did Ilse Brandt discover?", "Ilse Brandt", "Corrin"),
    ("The Sable Street bakery opens at 6 am.", "When does the Sable Street bakery open?",
     "how early is the sable street bakery open", "Which bakery opens at 6 am?", "6", "Sable"),
]
PROBE = [("What is the capital of France?", "Paris"), ("Who wrote Romeo and Juliet?", "Shakespeare"),
         ("What is the largest planet in the Solar System?", "Jupiter"), ("How many legs does a spider have?", "8"),
         ("What is the chemical symbol for gold?", "Au"), ("Who painted the Mona Lisa?", "Leonardo")]
SYSTEM = "You are a concise assistant for our company. Answer in one sentence."
CHAT = [{"role": "user", "content": "Hi! Quick questions about work today."},
        {"role": "assistant", "content": "Sure, ask away."},
        {"role": "user", "content": "Thanks. First one is easy."},
        {"role": "assistant", "content": "Go ahead."}]
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--api", default="http://127.0.0.1:8000")
parser.add_argument("--token", default=None, help="SMFT_API_TOKEN, where the service sets one")
args = parser.parse_args()
c = httpx.Client(base_url=args.api, timeout=600,
                 headers={"Authorization": f"Bearer {args.token}"} if args.token else None)


def ask(q: str) -> str:
    r = c.post("/v1/query", json={"question": q})
    r.raise_for_status()
    return r.json()["answer"]


def chat(messages: list[dict[str, str]]) -> str:
    r = c.post("/v1/chat/completions", json={"model": "smft", "messages": messages, "max_tokens": 32})
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def has(text: str, want: str) -> bool:
    return want.lower().replace(" ", "") in text.lower().replace(" ", "")


def learned(fact_id: str) -> str:
    while (status := c.get(f"/v1/facts/{fact_id}").json()["status"]) not in ("learned", "failed"):
        time.sleep(2)
    return status


before = {q: ask(q) for q, _ in PROBE}
t = time.time()
posted = c.post("/v1/facts", json=[{"text": f[0]} for f in FACTS])
posted.raise_for_status()
ids = [f["id"] for f in posted.json()["facts"]]
states = [learned(i) for i in ids]
print(f"{len(ids)} posted together: {states.count('learned')} learned in {time.time() - t:.0f} s", flush=True)
score = {k: 0 for k in ("question", "own words", "reversed", "chat with system prompt", "last of three turns")}
for statement, q, own, rev, answer, subject in FACTS:
    got = {"question": ask(q), "own words": ask(own), "reversed": ask(rev),
           "chat with system prompt": chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]),
           "last of three turns": chat([*CHAT, {"role": "user", "content": own}])}
    for k, a in got.items():
        ok = has(a, subject if k == "reversed" else answer)
        score[k] += ok
        if not ok:
            asked = {"own words": own, "last of three turns": own, "reversed": rev}.get(k, q)
            print(f"  missed ({k}): {statement} | {asked!r} -> {a!r}")
print({k: f"{v}/{len(FACTS)}" for k, v in score.items()})
after = {q: ask(q) for q, _ in PROBE}
print("known before:", sum(has(before[q], w) for q, w in PROBE), "after:", sum(has(after[q], w) for q, w in PROBE),
      "of", len(PROBE))
# a correction, named
old = ids[1]
fix = c.post("/v1/facts", json={"text": "Ana Pereira is our new office manager.", "replaces": old})
fix.raise_for_status()
new = fix.json()["facts"][0]["id"]
print("correction:", learned(new), "; the fact it replaces:", c.get(f"/v1/facts/{old}").json()["status"])
for q in ("Who is the office manager?", "Who manages the office these days?", "Is Jorge Salas the office manager?"):
    print(f"  {q} -> {ask(q)!r}")
