"""`smft bench learn-forget | speed | load` and `smft addressing`: parse the flags, run the benchmark
(`bench/`), print its tables."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any


def _memory_config(args: argparse.Namespace):
    """The memory the command line asks for (--layers, --n-keys, --context-weight, --answer-context-weight,
    --value-dtype where the command has them)."""
    from model.config import MemoryConfig

    layers, n_keys, weight, answer_weight, value_dtype = (getattr(args, name, None) for name in (
        "layers", "n_keys", "context_weight", "answer_context_weight", "value_dtype"))
    try:
        return MemoryConfig(n_keys=MemoryConfig.n_keys if n_keys is None else n_keys,
                            layers=tuple(int(i) for i in layers.split(",")) if layers else None,
                            context_weight=MemoryConfig.context_weight if weight is None else weight,
                            answer_context_weight=answer_weight,
                            value_dtype=value_dtype or MemoryConfig.value_dtype)
    except ValueError as exc:
        raise SystemExit(f"memory: {exc}") from exc


def _version_zero(args: argparse.Namespace):
    from bench.version_zero import version_zero

    snapshot = Path(args.snapshot) if args.snapshot else None
    return version_zero(args.model, args.device, snapshot, None if snapshot else _memory_config(args))


def _stream(n_facts: int, seed: int, kinds: str | None):
    """The generated facts a learn-forget run teaches: every relation in turn, or with `kinds` (comma-separated)
    only those relations' facts of the same stream."""
    from bench.facts import facts_of_kinds, generate_facts

    if not kinds:
        return generate_facts(n_facts, seed=seed)
    try:
        return facts_of_kinds(n_facts, seed, kinds.split(","))
    except ValueError as exc:
        raise SystemExit(f"--kinds: {exc}") from exc


def cmd_bench_learn_forget(args: argparse.Namespace) -> int:
    import dataclasses

    from bench.learn_forget import (
        Stream,
        ask_with_notes,
        measure_baseline,
        read_results,
        run_methods,
        with_questions,
        write_report,
    )
    from bench.methods import MethodSpec, default_settings, memory_tag, parse_method_spec
    from model.config import StepSchedule
    from model.corpus import load_corpus
    from model.probe import read_probe
    from model.snapshot import save_snapshot
    from worker.settings import WorkerSettings

    out = Path(args.out)
    if args.report:
        try:
            results = read_results([Path(d) for d in args.report])
            if args.at_facts is not None:
                results = [r.up_to(args.at_facts) for r in results]
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--report: {exc}") from exc
        print(write_report(results, out, {"from": args.report, "at_facts": args.at_facts}, args.target))
        return 0

    if args.quick:
        n_facts, every, steps, probe_n, heldout_n = 3, 3, 3, 16, 8
        # one setting per method: the smoke run of the machinery (the TF-only ablation is in the full grid)
        specs = [MethodSpec("sparse", 1.0), MethodSpec("full", 1e-5), MethodSpec("lora", 1e-3)]
    else:
        n_facts, every, steps, probe_n, heldout_n = args.facts, args.every, args.steps, None, None
        specs = default_settings(WorkerSettings().sparse_config())  # SMFT_* variables apply, as in the worker
    if args.settings:
        try:
            specs = [parse_method_spec(item) for item in args.settings.split(",")]
        except ValueError as exc:
            raise SystemExit(f"--settings: {exc}") from exc
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    if args.notes is not None and not 0 <= args.notes <= 1:
        raise SystemExit(f"--notes must be a share of the question's words in [0, 1], got {args.notes}")
    if args.scoped and args.notes is None:
        raise SystemExit("--scoped goes with --notes: a question is answered with the memory when it finds a note")
    if args.notes is not None and not all(s.memory_only for s in specs):
        raise SystemExit("--notes asks a memory setting's saved run again: --settings sparse:... or service")
    facts = _stream(n_facts, args.seed, args.kinds)  # refused before version 0 is prepared (minutes)
    out.mkdir(parents=True, exist_ok=True)
    v0, stats = _version_zero(args)
    tag = memory_tag(v0.config, sorted(v0.memories))
    specs = [dataclasses.replace(s, memory=tag) if s.method in ("sparse", "service") else s for s in specs]
    snapshot = Path(args.snapshot) if args.snapshot else save_snapshot(v0, stats, 0, out / "v0.safetensors")
    probe = read_probe()[:probe_n]
    heldout = load_corpus().heldout_texts[:heldout_n]
    if any(s.method in ("sparse", "full", "lora") for s in specs):  # the service writes its own; retrieval none
        facts = with_questions(v0, facts, WorkerSettings().question_writer)
    stream = Stream(tuple(facts), tuple(probe), tuple(heldout), measure_baseline(v0, probe, heldout),
                    StepSchedule(steps=steps), every)
    if args.notes is not None:  # nothing trained: the saved runs' tables, asked again with notes
        from service.settings import ApiSettings

        api = ApiSettings()  # as the API decodes an answer with notes (SMFT_NOTE_CONTRAST, SMFT_NOTE_GROUNDING)
        contrast, grounding = api.note_contrast, api.note_grounding
        print(f"answers with notes decoded against version 0 without them: {contrast}; made again without them "
              f"where they took nothing from them: {grounding}", file=sys.stderr)
        try:
            for spec in specs:
                ask_with_notes(v0, spec, stream, out / "progress", args.notes, args.scoped, contrast, grounding)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--notes: {exc}") from exc
        results = read_results([out])  # with the runs themselves, asked without
    else:
        results = run_methods(args.model, snapshot, args.device, specs, stream, args.jobs, out / "progress",
                              (v0, stats))
    if not results:
        raise SystemExit("no setting reached its first checkpoint: every process died (out of memory?)")
    meta = {"facts": n_facts, "steps_per_fact": steps, "probe_questions": len(probe), "heldout_docs": len(heldout),
            "baseline": dataclasses.asdict(stream.baseline)}
    print(write_report(results, out, meta, args.target))
    return 0


def cmd_bench_speed(args: argparse.Namespace) -> int:
    import tempfile

    from bench.report import speed_tables, write_json
    from bench.speed import ratios, time_loading, time_queries, time_training_steps
    from model.snapshot import save_snapshot
    from service.settings import ApiSettings

    with tempfile.TemporaryDirectory() as tmp:
        snapshot = args.snapshot
        if snapshot is None:
            lm, stats = _version_zero(args)
            snapshot = save_snapshot(lm, stats, 0, Path(tmp) / "v0.safetensors")
            del lm
        timings = [time_loading(args.model, Path(snapshot), args.device)]
        timings += time_training_steps(args.model, Path(snapshot), args.device, args.repeats)
        # one taught question as the API answers it: with SMFT_NOTES (the default) the notes too
        timings += time_queries(args.model, Path(snapshot), args.device, args.repeats, notes=ApiSettings().notes,
                                contrast=ApiSettings().note_contrast)
    found = ratios(timings)
    print(speed_tables(timings, found))
    result: dict[str, Any] = {"timings": [t.as_dict() for t in timings], "ratios": found}
    if args.service:
        from bench.report import service_tables
        from bench.service import ServiceBenchConfig, run_service_bench

        env = {"SMFT_MODEL": args.model, "SMFT_DEVICE": args.device}
        config = ServiceBenchConfig(facts=args.facts, every_s=args.every, env=env, load_seconds=args.load_seconds)
        result["service"] = run_service_bench(config)
        print()
        print(service_tables(result["service"]))
    if args.out:
        write_json(Path(args.out), result)
    return 0


def cmd_bench_load(args: argparse.Namespace) -> int:
    from bench.load import LoadConfig, run_phase
    from bench.report import load_table, write_json

    reports = []
    for name, teach_every in (("queries", None), ("queries + teaching", args.teach_every)):
        config = LoadConfig(args.clients, args.duration, args.max_new_tokens, teach_every, args.token)
        print(f"phase '{name}': {args.clients} clients for {args.duration:g}s ...", file=sys.stderr)
        reports.append(run_phase(args.url, name, config))
    print(load_table(reports))
    for r in reports:
        for error in r.errors:
            print(f"error ({r.name}): {error}", file=sys.stderr)
    if args.out:
        write_json(Path(args.out), [r.as_dict() for r in reports])
    return 1 if any(r.query_errors or r.teach_errors for r in reports) else 0


# The worker settings that decide how a fact is taught: `smft bench usage` records and prints them, and its
# progress resumes only under the same ones.
TEACHING_SETTINGS = ("batch_facts", "steps", "loss_threshold", "max_steps", "top_t", "top_t_per_fact", "ranking",
                     "optimizer", "lr", "max_row_norm", "trained_slot_weight", "capped_slot_weight",
                     "synthetic_questions", "question_answer", "question_writer",
                     "split_statements", "reversed_questions", "neighbours_per_fact", "neighbours_alike",
                     "neighbour_reads", "answer_reads", "keep_weight")


def _usage_forms(text: str) -> tuple[str, ...]:
    from bench.usage import FORMS

    forms = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown form(s) {unknown}; the forms are {list(FORMS)}")
    return forms


def cmd_bench_usage(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from bench.facts import generate_facts, people_facts
    from bench.report import usage_tables, write_json
    from bench.usage import FORMS, corrections, run_usage
    from model.probe import read_probe
    from service.settings import ApiSettings
    from worker.settings import WorkerSettings

    settings = WorkerSettings()  # the worker's batching, steps and question writing; SMFT_* variables apply
    api = ApiSettings()
    recase = api.recase_names  # and the API's reading of lower-case questions
    notes = api.notes  # and, with SMFT_NOTES, the taught statements it finds put before each question
    scoped = api.memory_scope == "noted"  # and the memory read only for the questions that find one
    contrast = api.note_contrast  # and answers with notes decoded against version 0 without them
    grounding = api.note_grounding  # and one that took nothing from its notes made again without them
    retrieval = None
    if args.method != "service":
        from bench.methods import parse_method_spec
        from bench.retrieval import Retriever

        try:
            spec = parse_method_spec(args.method)
        except ValueError as exc:
            raise SystemExit(f"--method: {exc}") from exc
        if spec.method != "retrieval":
            raise SystemExit(f"--method: 'service' or 'retrieval[:MIN_MATCH]', got {args.method!r}")
        retrieval = functools.partial(Retriever, spec.top_t, spec.min_match)
    elif notes is not None:
        from bench.retrieval import Retriever
        from model.contrast import Contrast

        retrieval = functools.partial(Retriever, min_match=notes,
                                      contrast=Contrast(contrast) if contrast is not None else None,
                                      grounding=grounding)
    whole_probe = read_probe()  # corrections pick from all of it; --quick measures retention on a sample
    n_facts, n_fixes, probe = args.facts, args.corrections, whole_probe
    if args.quick:
        n_facts, n_fixes, probe = 4, 2, probe[:16]
    try:  # refused before version 0 is prepared (minutes)
        facts = people_facts(None if args.people == "all" else args.people.split(",")) if args.people else \
            generate_facts(n_facts, seed=args.seed)
    except ValueError as exc:
        raise SystemExit(f"--people: {exc}") from exc
    out = Path(args.out)
    v0, stats = _version_zero(args)
    if not args.snapshot:  # saved, so another run (other SMFT_* settings) can start from the same version 0
        from model.snapshot import save_snapshot

        out.mkdir(parents=True, exist_ok=True)
        print(f"version 0 saved as {save_snapshot(v0, stats, 0, out / 'v0.safetensors')}", file=sys.stderr)
    if args.people and args.quick:
        facts = facts[:n_facts]
    fixes, neighbours = corrections(whole_probe, n_fixes, seed=args.seed)
    if args.quick:
        neighbours = neighbours[:8]
    teaching = settings.model_dump(mode="json", include=set(TEACHING_SETTINGS))
    if teaching["question_answer"] == "statement":  # named only when changed, so saved progress still resumes
        del teaching["question_answer"]
    if teaching["question_writer"] == "instruction":  # the writer before session 35: saved progress resumes
        del teaching["question_writer"]
    run_key = {"facts": f"people {args.people}: {len(facts)}" if args.people else n_facts, "corrections": n_fixes,
               "seed": args.seed, "probe": len(probe), "model": args.model, "snapshot": args.snapshot,
               "settings": teaching, "recase_names": recase,
               "reversed_gold": "the subject as its statement names it"}  # since session 35 (bench/facts.py)
    if args.method != "service":  # (keys kept out for the service, so its saved progress still resumes)
        run_key["method"] = args.method
    elif notes is not None:
        run_key["notes"] = notes
        run_key["notes_floor"] = "content words, a named subject held"  # since session 34 (model/notes.py)
        run_key["notes_floor_names"] = "half where the note names all the question names"  # since session 37
        if scoped:
            run_key["memory_scope"] = "noted"
        if contrast is not None:  # since session 36 (model/contrast.py)
            run_key["note_contrast"] = {"alpha": contrast, "adaptive": True,
                                        "against": "version 0 without the notes", "amplified": "new words"}
        if grounding:  # since session 38 (model/notes.py)
            run_key["note_grounding"] = "an answer taking no word from its notes made again without them"
    print("teaching as the worker does: " + ", ".join(f"{k} {v}" for k, v in teaching.items())
          + f"; lower-case questions recased: {recase}; notes: {notes}; memory scope: "
          f"{'noted' if scoped else 'all'}; note contrast: {contrast}; note grounding: {grounding}", file=sys.stderr)
    results = run_usage(v0, stats, settings, facts, fixes, neighbours, probe, out / "progress", run_key,
                        forms=args.forms or FORMS, recase=recase, retrieval=retrieval,
                        teach=args.method == "service", scoped=scoped and args.method == "service",
                        on_result=lambda r: print(f"{r.name}: done ({r.seconds:.0f} s of training)", file=sys.stderr))
    table = usage_tables(results)
    write_json(out / "usage.json", {"run": run_key, "results": [asdict(r) for r in results]})
    (out / "usage.md").write_text(table + "\n")
    print(table)
    return 0


def cmd_bench_forgetting(args: argparse.Namespace) -> int:
    import json

    import torch

    from bench.forgetting import analyse
    from bench.learn_forget import MethodResult, stream_key
    from bench.report import forgetting_tables, write_json
    from bench.table_log import TableLog
    from model.config import StepSchedule
    from model.probe import read_probe
    from model.snapshot import load_snapshot
    from worker.settings import WorkerSettings

    run = Path(args.run)
    saved = sorted(p for p in (run / "progress").glob("*.json") if p.with_suffix("").is_dir())
    if args.label:
        saved = [p for p in saved if p.stem == args.label]
    if len(saved) != 1:
        found = ", ".join(p.stem for p in saved) or "none"
        raise SystemExit(f"{run / 'progress'}: need exactly one setting that saved its table (--label picks one), "
                         f"found {found}")
    result = MethodResult.from_dict(json.loads(saved[0].read_text()))
    facts = _stream(args.facts, args.seed, args.kinds)
    snapshot = Path(args.snapshot) if args.snapshot else run / "v0.safetensors"
    lm, _ = load_snapshot(args.model, snapshot, args.device)
    base = {idx: m.values.detach().clone() for idx, m in lm.memories.items()}
    tables = TableLog(saved[0].with_suffix(""), stream_key(facts, StepSchedule(steps=args.steps), args.every))
    taught, writers = tables.replay(lm, [c.facts_taught for c in result.checkpoints])
    if taught == 0:
        raise SystemExit(f"{tables.directory} holds no table of this stream: pass the --facts, --seed, --steps and "
                         "--every the learn-forget run was given")
    if taught != result.final.facts_taught:
        raise SystemExit(f"{tables.directory}: the saved table stops at {taught} facts but the progress file goes "
                         f"to {result.final.facts_taught}: rerun the benchmark to its next checkpoint")
    with torch.no_grad():
        found = analyse(lm, base, writers, result.checkpoints, facts, read_probe(),
                        WorkerSettings().max_row_norm, args.limit)
    out = Path(args.out) if args.out else run / "forgetting"
    write_json(out / "forgetting.json", {"run": str(run), "setting": result.spec.label, **found})
    text = forgetting_tables(found, {f.fact.fact_id: f.fact.text for f in facts})
    (out / "forgetting.md").write_text(text + "\n")
    print(text + f"\n\nwrote {out / 'forgetting.json'}, {out / 'forgetting.md'}")
    return 0


def cmd_bench_steps(args: argparse.Namespace) -> int:
    import dataclasses

    from bench.facts import generate_facts
    from bench.report import write_json
    from bench.row_steps import OptimizerSetting, measure, steps_table
    from worker.settings import WorkerSettings

    try:
        chosen = [OptimizerSetting.parse(s) for s in args.optimizers.split(",")]
    except ValueError as exc:
        raise SystemExit(f"--optimizers: {exc}") from exc
    v0, stats = _version_zero(args)
    facts = generate_facts(args.facts, seed=args.seed)
    rows = [measure(v0, stats, facts, WorkerSettings(), s) for s in chosen]
    print(steps_table(rows, len(facts)))
    if args.out:
        write_json(Path(args.out), {"facts": len(facts), "seed": args.seed,
                                    "settings": [dataclasses.asdict(r) for r in rows]})
    return 0


def cmd_addressing(args: argparse.Namespace) -> int:
    from bench.addressing import answer_overlap
    from bench.facts import generate_facts
    from bench.report import overlap_table, usage_table
    from model.corpus import load_corpus
    from model.lm import MemoryLM
    from model.prepare import prepare_version_zero

    lm = MemoryLM.load(args.model, _memory_config(args), device=args.device)
    _, report = prepare_version_zero(lm, load_corpus(args.background or None), measure_uncentred=True)
    assert report.uncentred is not None
    print(usage_table(report.centred, report.uncentred))
    overlap = answer_overlap(lm, generate_facts(args.facts))
    print(f"\nSlots read where the answer is predicted, Jaccard overlap over {args.facts} generated facts:\n")
    print(overlap_table(overlap))
    return 0


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="which", required=True)
    lf = bench.add_parser("learn-forget", help="sparse memory vs full finetuning vs LoRA on one fact stream")
    lf.add_argument("--model", default="smollm2")
    lf.add_argument("--device", default="cpu")
    lf.add_argument("--snapshot", help="a version-0 snapshot to start from (default: prepare one now)")
    lf.add_argument("--layers", help="without --snapshot: comma-separated decoder layers to give a memory")
    lf.add_argument("--n-keys", dest="n_keys", type=int, help="without --snapshot: sub-keys per half (n_keys^2 slots)")
    lf.add_argument("--context-weight", dest="context_weight", type=float,
                    help="without --snapshot: weight of context-keyed addressing (model/context.py)")
    lf.add_argument("--answer-context-weight", dest="answer_context_weight", type=float,
                    help="without --snapshot: the context weight where an answer's first token is predicted "
                         "(default: --context-weight's)")
    lf.add_argument("--value-dtype", dest="value_dtype", choices=("float32", "bfloat16"),
                    help="without --snapshot: how the value table is stored (default: the memory's, bfloat16)")
    lf.add_argument("--facts", type=int, default=100)
    lf.add_argument("--every", type=int, default=10, help="evaluate after every K facts")
    lf.add_argument("--steps", type=int, default=10, help="steps per fact")
    lf.add_argument("--target", type=float,
                    help="learning at which methods are compared (default: the most that every method reaches)")
    lf.add_argument("--settings", help="comma-separated method:lr[:top_t[:ranking[:optimizer[:max_row_norm"
                    "[:trained_slot_weight]]]]], e.g. sparse:1.0:500,sparse:1e4:500:tfidf:sgd,"
                    "sparse:1.0:500:tfidf:adam:30,sparse:1.0:500:tfidf:adam::0.1,full:1e-5; 'service' is the "
                    "worker's own teaching (SMFT_* apply), 'service:full:LR' and 'service:lora:LR' the same "
                    "examples and batches for full finetuning and LoRA; 'retrieval[:MIN_MATCH]' trains nothing")
    lf.add_argument("--seed", type=int, default=0)
    lf.add_argument("--kinds", help="comma-separated relations (capital, inventor, ...): teach only their facts of "
                    "the stream, e.g. the capitals alone to see how they leak into the probe's")
    lf.add_argument("--jobs", type=int, default=1, help="settings run side by side, each in its own process")
    lf.add_argument("--report", nargs="+", metavar="DIR",
                    help="train nothing: table and plots from the progress files of earlier runs' --out folders")
    lf.add_argument("--at-facts", dest="at_facts", type=int,
                    help="with --report: every setting as it stood after this many facts")
    lf.add_argument("--notes", type=float, metavar="MIN_MATCH",
                    help="train nothing: ask each --settings memory setting's saved run in --out again, its table "
                    "replayed checkpoint by checkpoint, with the taught statements BM25 finds holding this share of "
                    "the question's content words (and its name: model/notes.py) put into the prompt (as SMFT_NOTES), "
                    "and decoded as SMFT_NOTE_CONTRAST says, as the API decodes an answer with notes")
    lf.add_argument("--scoped", action="store_true",
                    help="with --notes: a question that finds no note and names nothing a taught fact names is "
                    "answered without the memory, as version 0 answers it (as the service's SMFT_MEMORY_SCOPE=noted)")
    lf.add_argument("--quick", action="store_true", help="3 facts, 3 steps, a probe sample: minutes, for tests")
    lf.add_argument("--out", default="runs/learn_forget")
    lf.set_defaults(fn=cmd_bench_learn_forget)

    speed = bench.add_parser("speed", help="training step per method and query latency with/without the memory")
    speed.add_argument("--model", default="smollm2")
    speed.add_argument("--device", default="cpu")
    speed.add_argument("--snapshot", help="a version-0 snapshot (default: prepare one now)")
    speed.add_argument("--n-keys", dest="n_keys", type=int,
                       help="without --snapshot: sub-keys per half (n_keys^2 slots)")
    speed.add_argument("--value-dtype", dest="value_dtype", choices=("float32", "bfloat16"),
                       help="without --snapshot: how the value table is stored (default: the memory's, bfloat16)")
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

    usage = bench.add_parser("usage", help="facts taught as people post them (paraphrased, bare, in a paragraph) and "
                                           "asked as people ask (reworded, reversed, in a chat), plus corrections")
    usage.add_argument("--model", default="smollm2")
    usage.add_argument("--device", default="cpu")
    usage.add_argument("--snapshot", help="a version-0 snapshot (default: prepare one now, as the worker would)")
    usage.add_argument("--facts", type=int, default=24, help="generated facts per form")
    usage.add_argument("--people", metavar="SPLITS", help="instead of generated facts, the statements written as "
                       "people post them (bench/data/people.jsonl), comma-separated splits: the twelve changes were "
                       "tried on ('dev'), the 24 held out ('test'), 36 more written in session 37 ('fresh'), or "
                       "'all' 72 (sessions 35-36's 'all' was dev,test)")
    usage.add_argument("--corrections", type=int, default=8, help="capitals version 0 knows, each taught anew")
    usage.add_argument("--seed", type=int, default=0)
    usage.add_argument("--quick", action="store_true", help="4 facts, 2 corrections, a probe sample: for tests")
    usage.add_argument("--method", default="service", help=(
        "'service': taught as the worker teaches (default); 'retrieval' or 'retrieval:MIN_MATCH': nothing taught, "
        "the posts indexed by BM25 and the best notes put before each question (bench/retrieval.py). "
        "SMFT_NOTES applies to 'service' as to the API: taught, and notes put before each question"))
    usage.add_argument("--forms", type=_usage_forms, help="comma-separated forms to measure (default: all of them)")
    usage.add_argument("--out", default="runs/usage", help="usage.json, usage.md and progress/ (resumed)")
    usage.set_defaults(fn=cmd_bench_usage)

    forget = bench.add_parser("forgetting", help="every answer a learn-forget run lost, taken apart: the rows, "
                                                 "positions and facts that took it, and what brings it back")
    forget.add_argument("run", help="a learn-forget --out folder whose sparse or service setting saved its deltas")
    forget.add_argument("--label", help="which saved table in run/progress (default: the only one)")
    forget.add_argument("--snapshot", help="the run's version-0 snapshot (default: run/v0.safetensors)")
    forget.add_argument("--model", default="smollm2")
    forget.add_argument("--device", default="cpu")
    forget.add_argument("--facts", type=int, default=100, help="the run's --facts")
    forget.add_argument("--seed", type=int, default=0, help="the run's --seed")
    forget.add_argument("--kinds", help="the run's --kinds")
    forget.add_argument("--steps", type=int, default=10, help="the run's --steps")
    forget.add_argument("--every", type=int, default=10, help="the run's --every")
    forget.add_argument("--limit", type=int, help="take apart at most this many losses of each kind, spread over them")
    forget.add_argument("--out", help="forgetting.json and forgetting.md (default: run/forgetting)")
    forget.set_defaults(fn=cmd_bench_forgetting)

    steps = bench.add_parser("steps", help="how far teaching moves each row it trains, per optimizer setting, "
                                           "in the worker's batches (SMFT_* settings apply)")
    steps.add_argument("--model", default="smollm2")
    steps.add_argument("--device", default="cpu")
    steps.add_argument("--snapshot", help="a version-0 snapshot (default: prepare one now)")
    steps.add_argument("--optimizers", default="adam:1,sgd:1e6", help="comma-separated optimizer:lr settings")
    steps.add_argument("--facts", type=int, default=8, help="generated facts taught with each setting")
    steps.add_argument("--seed", type=int, default=0)
    steps.add_argument("--out", help="write the table as JSON here")
    steps.set_defaults(fn=cmd_bench_steps)

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
    addr.add_argument("--answer-context-weight", dest="answer_context_weight", type=float,
                      help="the context weight where an answer's first token is predicted "
                           "(default: --context-weight's)")
    addr.add_argument("--facts", type=int, default=48, help="generated facts for the answer-position overlaps")
    addr.set_defaults(fn=cmd_addressing)
