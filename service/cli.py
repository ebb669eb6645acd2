"""The `smft` command: serve, worker, api, teach, ask, and data preparation."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any


def _overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def cmd_serve(args: argparse.Namespace) -> int:
    from service.launcher import serve
    from service.settings import ApiSettings

    return serve(ApiSettings(**_overrides(args, ("redis_url", "model", "data_dir", "device", "host", "port"))))


def cmd_worker(args: argparse.Namespace) -> int:
    import redis

    from worker.loop import Worker
    from worker.settings import WorkerSettings

    settings = WorkerSettings(**_overrides(args, ("redis_url", "model", "data_dir", "device")))
    if not settings.redis_url:
        raise SystemExit("smft worker needs --redis-url or SMFT_REDIS_URL")
    worker = Worker(settings, redis.Redis.from_url(settings.redis_url))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    worker.run(burst=args.burst)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import ApiSettings

    settings = ApiSettings(**_overrides(args, ("redis_url", "model", "data_dir", "device", "host", "port")))
    if not settings.api_token:
        logging.getLogger("smft").warning("no SMFT_API_TOKEN set: writes are open to anyone on this machine, so the "
                                          "API binds to loopback only (%s:%d)", settings.host, settings.port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


def _http(args: argparse.Namespace, method: str, path: str, body: Any | None = None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    r = httpx.request(method, f"{args.url.rstrip('/')}{path}", json=body, headers=headers, timeout=120)
    if r.status_code >= 400:
        raise SystemExit(f"HTTP {r.status_code}: {r.text}")
    return r.json()


def cmd_teach(args: argparse.Namespace) -> int:
    fact: dict[str, Any] = {"text": args.text, "paraphrases": args.paraphrase or []}
    if args.question:
        fact.update(question=args.question, answer=args.answer)
    print(json.dumps(_http(args, "POST", "/v1/facts", fact), indent=2))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    body = {"question": args.question, "max_new_tokens": args.max_new_tokens}
    if args.after_fact:
        body.update(after_fact=args.after_fact, wait_s=60)
    print(json.dumps(_http(args, "POST", "/v1/query", body), indent=2))
    return 0


def cmd_data_background(args: argparse.Namespace) -> int:
    from pathlib import Path

    from model.corpus import default_corpus_path, generate_background, write_documents
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


def _memory_config(args: argparse.Namespace):
    """The memory the command line asks for (--layers, --n-keys, --context-weight where the command has them)."""
    from model.config import MemoryConfig

    layers, n_keys, weight = (getattr(args, name, None) for name in ("layers", "n_keys", "context_weight"))
    try:
        return MemoryConfig(n_keys=MemoryConfig.n_keys if n_keys is None else n_keys,
                            layers=tuple(int(i) for i in layers.split(",")) if layers else None,
                            context_weight=MemoryConfig.context_weight if weight is None else weight)
    except ValueError as exc:
        raise SystemExit(f"memory: {exc}") from exc


def _version_zero(args: argparse.Namespace):
    """The version-0 model and its statistics: from a saved snapshot, or prepared now."""
    from model.corpus import load_corpus
    from model.lm import MemoryLM
    from model.prepare import prepare_version_zero
    from model.snapshot import load_snapshot

    if args.snapshot:
        return load_snapshot(args.model, Path(args.snapshot), args.device)
    lm = MemoryLM.load(args.model, _memory_config(args), args.device)
    stats, _ = prepare_version_zero(lm, load_corpus())
    return lm, stats


def _method_spec(text: str):
    """'sparse:LR[:T[:RANKING[:OPTIMIZER[:MAX_ROW_NORM[:TRAINED_SLOT_WEIGHT]]]]]', 'full:1e-5' or 'lora:1e-3'
    -> MethodSpec. An empty field keeps its default: 'sparse:1:500:tfidf:adam::0' has no cap."""
    from model.learn_forget import MethodSpec

    method, lr, *rest = text.strip().split(":")
    fields = (("top_t", int), ("ranking", str), ("optimizer", str), ("max_row_norm", float),
              ("trained_slot_weight", float))
    if len(rest) > len(fields):
        raise ValueError(f"{text!r}: at most {len(fields) + 2} fields")
    extra = {name: parse(value) for (name, parse), value in zip(fields[:len(rest)], rest, strict=True) if value}
    return MethodSpec(method, float(lr), **extra)


def _default_settings():
    """The grid a plain `smft bench learn-forget` runs: the worker's sparse setting, a few t, lower
    learning rates (to match the baselines' learning, which stays far below it on a one-fact-per-step
    stream), the paper's uncapped step and TF-only as ablations; full finetuning and LoRA at the
    learning rates that learned most in the 20-fact sweep and one gentler each."""
    from dataclasses import replace

    from model.learn_forget import MethodSpec
    from worker.settings import WorkerSettings

    worker = WorkerSettings().sparse_config()  # as the worker reads them, SMFT_* variables included
    service = MethodSpec("sparse", worker.lr, worker.top_t, worker.ranking, worker.optimizer, worker.max_row_norm,
                         worker.trained_slot_weight)
    specs = [service, *(replace(service, top_t=t) for t in (250, 1000)),
             *(replace(service, lr=lr) for lr in (0.3, 0.1)),
             replace(service, max_row_norm=None), replace(service, ranking="tf")]
    return specs + [MethodSpec("full", lr) for lr in (3e-5, 1e-4)] + [MethodSpec("lora", lr) for lr in (3e-4, 1e-3)]


def cmd_bench_learn_forget(args: argparse.Namespace) -> int:
    import dataclasses

    from model.config import StepSchedule
    from model.corpus import load_corpus
    from model.learn_forget import (
        MethodSpec,
        Stream,
        measure_baseline,
        memory_tag,
        read_results,
        run_methods,
        with_questions,
    )
    from model.probe import read_probe
    from model.snapshot import save_snapshot
    from model.synthetic_facts import generate_facts

    out = Path(args.out)
    if args.report:
        try:
            results = read_results([Path(d) for d in args.report])
            if args.at_facts is not None:
                results = [r.up_to(args.at_facts) for r in results]
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--report: {exc}") from exc
        return _write_learn_forget(results, out, {"from": args.report, "at_facts": args.at_facts}, args.target)

    if args.quick:
        n_facts, every, steps, probe_n, heldout_n = 3, 3, 3, 16, 8
        specs = [MethodSpec("sparse", 1.0), MethodSpec("sparse", 1.0, ranking="tf"), MethodSpec("full", 1e-5),
                 MethodSpec("lora", 1e-3)]
    else:
        n_facts, every, steps, probe_n, heldout_n = args.facts, args.every, args.steps, None, None
        specs = _default_settings()
    if args.settings:
        try:
            specs = [_method_spec(item) for item in args.settings.split(",")]
        except ValueError as exc:
            raise SystemExit(f"--settings: {exc}") from exc
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    out.mkdir(parents=True, exist_ok=True)
    v0, stats = _version_zero(args)
    tag = memory_tag(v0.config, sorted(v0.memories))
    specs = [dataclasses.replace(s, memory=tag) if s.method == "sparse" else s for s in specs]
    snapshot = Path(args.snapshot) if args.snapshot else save_snapshot(v0, stats, 0, out / "v0.safetensors")
    probe = read_probe()[:probe_n]
    heldout = load_corpus().heldout_texts[:heldout_n]
    facts = with_questions(v0, generate_facts(n_facts, seed=args.seed))
    stream = Stream(tuple(facts), tuple(probe), tuple(heldout), measure_baseline(v0, probe, heldout),
                    StepSchedule(steps=steps), every)
    results = run_methods(args.model, snapshot, args.device, specs, stream, args.jobs, out / "progress", (v0, stats))
    if not results:
        raise SystemExit("no setting reached its first checkpoint: every process died (out of memory?)")
    meta = {"facts": n_facts, "steps_per_fact": steps, "probe_questions": len(probe), "heldout_docs": len(heldout),
            "baseline": dataclasses.asdict(stream.baseline)}
    return _write_learn_forget(results, out, meta, args.target)


def _write_learn_forget(results, out: Path, meta: dict, target: float | None) -> int:
    """The JSON report, the Markdown table and the plots of a learn-forget comparison.

    Without a target, methods are matched at the most learning every one of them reaches.
    """
    from model.learn_forget import at_matched_learning, common_learning, compared_at, markdown_table, write_plots

    out.mkdir(parents=True, exist_ok=True)
    if target is None:
        target = common_learning(results)
    chosen = at_matched_learning(results, target)
    table = markdown_table(results, chosen)
    facts = compared_at(results)
    table += (f"\n\n\"matched\": per method, the setting that forgets least (retention-probe F1) among those that "
              f"answer at least {target:.0%} of the taught facts, else the one that learns most.")
    if facts is not None and any(r.final.facts_taught != facts for r in results):
        table += (f" The settings stopped at different points; \"matched\" compares each as it stood after "
                  f"{facts} facts (`--report ... --at-facts {facts}` shows every setting there).")
    report = {**meta, "target_learning": target, "matched_at_facts": facts,
              "matched": {m: r.spec.label for m, r in chosen.items()}, "results": [r.as_dict() for r in results]}
    (out / "learn_forget.json").write_text(json.dumps(report, indent=2))
    (out / "learn_forget.md").write_text(table + "\n")
    plots = write_plots(results, out)
    print(table)
    print(f"\nwrote {out / 'learn_forget.json'}, {out / 'learn_forget.md'}, " + ", ".join(plots))
    return 0


def cmd_bench_speed(args: argparse.Namespace) -> int:
    import tempfile

    from model.snapshot import save_snapshot
    from model.speed import markdown, ratios, time_queries, time_training_steps

    with tempfile.TemporaryDirectory() as tmp:
        snapshot = args.snapshot
        if snapshot is None:
            lm, stats = _version_zero(args)
            snapshot = save_snapshot(lm, stats, 0, Path(tmp) / "v0.safetensors")
            del lm
        timings = time_training_steps(args.model, Path(snapshot), args.device, args.repeats)
        timings += time_queries(args.model, Path(snapshot), args.device, args.repeats)
    found = ratios(timings)
    print(markdown(timings, found))
    result = {"timings": [t.as_dict() for t in timings], "ratios": found}
    if args.service:
        from service import bench_service

        env = {"SMFT_MODEL": args.model, "SMFT_DEVICE": args.device}
        config = bench_service.ServiceBenchConfig(facts=args.facts, every_s=args.every, env=env,
                                                  load_seconds=args.load_seconds)
        result["service"] = bench_service.run_service_bench(config)
        print()
        print(bench_service.markdown(result["service"]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def cmd_bench_load(args: argparse.Namespace) -> int:
    from service.loadtest import LoadConfig, markdown, run_phase

    reports = []
    for name, teach_every in (("queries", None), ("queries + teaching", args.teach_every)):
        config = LoadConfig(args.clients, args.duration, args.max_new_tokens, teach_every, args.token)
        print(f"phase '{name}': {args.clients} clients for {args.duration:g}s ...", file=sys.stderr)
        reports.append(run_phase(args.url, name, config))
    print(markdown(reports))
    for r in reports:
        for error in r.errors:
            print(f"error ({r.name}): {error}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps([r.as_dict() for r in reports], indent=2))
    return 1 if any(r.query_errors or r.teach_errors for r in reports) else 0


def cmd_addressing(args: argparse.Namespace) -> int:
    from model.answer_addressing import answer_overlap
    from model.corpus import load_corpus
    from model.lm import MemoryLM
    from model.prepare import prepare_version_zero
    from model.synthetic_facts import generate_facts

    lm = MemoryLM.load(args.model, _memory_config(args), device=args.device)
    _, report = prepare_version_zero(lm, load_corpus(args.background or None), measure_uncentred=True)
    print("| layer | addressing | slots read | reads by top 1% of slots | usage entropy |")
    print("| --- | --- | --- | --- | --- |")
    for layer, centred in report.centred.items():
        assert report.uncentred is not None
        print(f"| {layer} | raw hidden states | {report.uncentred[layer].as_row()} |")
        print(f"| {layer} | centred (version 0) | {centred.as_row()} |")
    overlap = answer_overlap(lm, generate_facts(args.facts))
    print(f"\nSlots read where the answer is predicted, Jaccard overlap over {args.facts} generated facts:\n")
    print("| layer | same fact, two phrasings | same phrasing, other fact of the relation | other relation |")
    print("| --- | --- | --- | --- |")
    for layer, row in overlap.items():
        print(f"| {layer} | {row.as_row()} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smft", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--redis-url", dest="redis_url")
        sp.add_argument("--model")
        sp.add_argument("--data-dir", dest="data_dir")
        sp.add_argument("--device")

    for name, fn, helptext in (("serve", cmd_serve, "Redis (private unless --redis-url), worker and API"),
                               ("api", cmd_api, "one API replica"), ("worker", cmd_worker, "the training worker")):
        sp = sub.add_parser(name, help=helptext)
        common(sp)
        if name != "worker":
            sp.add_argument("--host")
            sp.add_argument("--port", type=int)
        else:
            sp.add_argument("--burst", action="store_true", help="drain the queue, then exit")
        sp.set_defaults(fn=fn)

    for name, fn in (("teach", cmd_teach), ("ask", cmd_ask)):
        sp = sub.add_parser(name, help=f"{name} through a running API")
        sp.add_argument("--url", default="http://127.0.0.1:8000")
        sp.add_argument("--token")
        sp.set_defaults(fn=fn)
        if name == "teach":
            sp.add_argument("text")
            sp.add_argument("--paraphrase", action="append")
            sp.add_argument("--question")
            sp.add_argument("--answer")
        else:
            sp.add_argument("question")
            sp.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=32)
            sp.add_argument("--after-fact", dest="after_fact")

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

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="which", required=True)
    lf = bench.add_parser("learn-forget", help="sparse memory vs full finetuning vs LoRA on one fact stream")
    lf.add_argument("--model", default="smollm2")
    lf.add_argument("--device", default="cpu")
    lf.add_argument("--snapshot", help="a version-0 snapshot to start from (default: prepare one now)")
    lf.add_argument("--layers", help="without --snapshot: comma-separated decoder layers to give a memory")
    lf.add_argument("--n-keys", dest="n_keys", type=int, help="without --snapshot: sub-keys per half (n_keys^2 slots)")
    lf.add_argument("--context-weight", dest="context_weight", type=float,
                    help="without --snapshot: weight of context-keyed addressing (model/context.py)")
    lf.add_argument("--facts", type=int, default=100)
    lf.add_argument("--every", type=int, default=10, help="evaluate after every K facts")
    lf.add_argument("--steps", type=int, default=10, help="steps per fact")
    lf.add_argument("--target", type=float,
                    help="learning at which methods are compared (default: the most that every method reaches)")
    lf.add_argument("--settings", help="comma-separated method:lr[:top_t[:ranking[:optimizer[:max_row_norm"
                    "[:trained_slot_weight]]]]], e.g. sparse:1.0:500,sparse:1e4:500:tfidf:sgd,"
                    "sparse:1.0:500:tfidf:adam:30,sparse:1.0:500:tfidf:adam::0.1,full:1e-5")
    lf.add_argument("--seed", type=int, default=0)
    lf.add_argument("--jobs", type=int, default=1, help="settings run side by side, each in its own process")
    lf.add_argument("--report", nargs="+", metavar="DIR",
                    help="train nothing: table and plots from the progress files of earlier runs' --out folders")
    lf.add_argument("--at-facts", dest="at_facts", type=int,
                    help="with --report: every setting as it stood after this many facts")
    lf.add_argument("--quick", action="store_true", help="3 facts, 3 steps, a probe sample: minutes, for tests")
    lf.add_argument("--out", default="bench/results")
    lf.set_defaults(fn=cmd_bench_learn_forget)

    speed = bench.add_parser("speed", help="training step per method and query latency with/without the memory")
    speed.add_argument("--model", default="smollm2")
    speed.add_argument("--device", default="cpu")
    speed.add_argument("--snapshot", help="a version-0 snapshot (default: prepare one now)")
    speed.add_argument("--repeats", type=int, default=5)
    speed.add_argument("--service", action="store_true",
                       help="also the fact-to-answer path through Redis, the worker and two API replicas")
    speed.add_argument("--facts", type=int, default=10, help="with --service: facts taught one by one")
    speed.add_argument("--every", type=float, default=15.0, help="with --service: seconds between facts")
    speed.add_argument("--load-seconds", dest="load_seconds", type=float, default=30.0,
                       help="with --service: seconds per query-load phase (1 and 8 clients, without and with "
                            "teaching; 0 skips them)")
    speed.add_argument("--out", help="write the timings as JSON here")
    speed.set_defaults(fn=cmd_bench_speed)

    load = bench.add_parser("load", help="concurrent query clients, without and with a teaching stream, "
                                         "against a running service")
    load.add_argument("--url", default="http://127.0.0.1:8000")
    load.add_argument("--token")
    load.add_argument("--clients", type=int, default=8)
    load.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    load.add_argument("--teach-every", dest="teach_every", type=float, default=2.0, help="seconds between facts")
    load.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=20)
    load.add_argument("--out", help="write the reports as JSON here")
    load.set_defaults(fn=cmd_bench_load)

    addr = sub.add_parser("addressing", help="slot usage of version 0 (raw vs centred), and what the memory "
                                             "keys on where answers are predicted")
    addr.add_argument("--model", default="smollm2")
    addr.add_argument("--device", default="cpu")
    addr.add_argument("--n-keys", dest="n_keys", type=int, help="sub-keys per half (default: the service's)")
    addr.add_argument("--background", nargs="*")
    addr.add_argument("--layers", help="comma-separated decoder layers to give a memory "
                                       "(default: the service's, 80%% of the depth)")
    addr.add_argument("--context-weight", dest="context_weight", type=float,
                      help="weight of context-keyed addressing (model/context.py; default: the service's)")
    addr.add_argument("--facts", type=int, default=48, help="generated facts for the answer-position overlaps")
    addr.set_defaults(fn=cmd_addressing)
    return p


def main(argv: list[str] | None = None) -> int:
    from worker.logs import setup_logging
    from worker.settings import CommonSettings

    args = build_parser().parse_args(argv)
    # Processes that serve log for machines (JSON by default); commands a person runs log for people.
    serving = args.fn in (cmd_serve, cmd_api, cmd_worker)
    setup_logging(CommonSettings().log_format if serving else "text")
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
