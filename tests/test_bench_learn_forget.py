"""`smft bench learn-forget`: the quick run on the real model, and settings run in parallel processes."""

import copy
import json
import os
import signal
from dataclasses import asdict, replace

import pytest

from cli.main import main
from tests.conftest import record_answers


@pytest.mark.integration
def test_quick_benchmark_writes_json_table_and_plots(real_v0, tmp_path, capsys):
    _, _, _, v0_path = real_v0
    assert main(["bench", "learn-forget", "--quick", "--snapshot", str(v0_path), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "learn_forget.json").read_text())
    labels = [r["label"] for r in report["results"]]
    assert {r["settings"]["method"] for r in report["results"]} == {"sparse", "full", "lora"}
    assert len(labels) == 3  # one setting per method
    for result in report["results"]:
        final = result["checkpoints"][-1]
        assert final["facts_taught"] == 3 and result["steps"] == 9
        assert 0 <= final["learned"] <= 1 and final["nll_change"] > -0.5 and 0 <= final["probe_answered"] <= 1
    assert set(report["matched"]) == {"sparse", "full", "lora"}
    # matched where every method can be: the best learning of the method that learns least
    best = {}
    for result in report["results"]:
        method = result["settings"]["method"]
        best[method] = max(best.get(method, 0.0), result["checkpoints"][-1]["learned"])
    assert report["target_learning"] == min(best.values())
    table = (tmp_path / "learn_forget.md").read_text()
    rows = [line for line in table.split("\n\n")[0].splitlines() if line.startswith("|")]
    assert len(rows) == len(labels) + 2 and "probe still answered" in rows[0]
    # then each setting over the stream: a row per checkpoint, the first and most recent K facts
    assert table.count("most recent K") == len(labels)
    assert f"answer at least {min(best.values()):.0%} of the taught facts" in table
    for png in ("learning_vs_forgetting.png", "over_facts.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert "learned (contains)" in capsys.readouterr().out


@pytest.mark.slow  # a process per setting
def test_settings_run_side_by_side_give_what_they_give_one_after_another(tiny_lm, tiny_model_dir, tmp_path):
    from bench.facts import generate_facts
    from bench.learn_forget import Baseline, Stream, run_methods
    from bench.methods import MethodSpec
    from model.config import StepSchedule
    from model.evaluation import mean_nll
    from model.probe import read_probe
    from model.snapshot import save_snapshot

    lm, stats, corpus = tiny_lm
    snapshot = save_snapshot(lm, stats, 0, tmp_path / "v0.safetensors")
    probe, heldout = read_probe()[:4], corpus.heldout_texts
    stream = Stream(tuple(generate_facts(2, seed=1)), tuple(probe), tuple(heldout),
                    Baseline(1.0, mean_nll(lm, heldout)),  # the random model answers no probe question
                    StepSchedule(steps=2), eval_every=1)
    specs = [MethodSpec("sparse", 1.0, top_t=8), MethodSpec("full", 1e-3)]
    here = run_methods(str(tiny_model_dir), snapshot, "cpu", specs, stream, jobs=1, loaded=(lm, stats))
    apart = run_methods(str(tiny_model_dir), snapshot, "cpu", specs, stream, jobs=2,
                        progress_dir=tmp_path / "run" / "progress")
    assert [r.spec for r in apart] == specs and [r.steps for r in apart] == [4, 4]
    for a, b in zip(here, apart, strict=True):
        assert [c.facts_taught for c in b.checkpoints] == [1, 2]
        assert [c.nll_change for c in b.checkpoints] == pytest.approx([c.nll_change for c in a.checkpoints], abs=1e-4)
        assert [c.learned for c in b.checkpoints] == [c.learned for c in a.checkpoints]
        assert [c.probe_answered for c in b.checkpoints] == [0.0, 0.0]  # recorded; the random model knows none
    # each process left its progress, rewritten after every checkpoint
    written = sorted(p.name for p in (tmp_path / "run" / "progress").glob("*.json"))
    assert written == ["full_lr=0.001.json", "sparse_tfidf_t=8_lr=1.json"]
    assert len(json.loads((tmp_path / "run" / "progress" / written[0]).read_text())["checkpoints"]) == 2

    # ... from which a report is made without training, here as things stood after the first fact
    assert main(["bench", "learn-forget", "--report", str(tmp_path / "run"), "--at-facts", "1",
                 "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "learn_forget.json").read_text())
    assert [(r["label"], r["steps"], len(r["checkpoints"])) for r in report["results"]] == \
        [("full lr=0.001", 2, 1), ("sparse tfidf t=8 lr=1", 2, 1)]
    assert report["results"][1]["checkpoints"][0] == asdict(apart[0].checkpoints[0])
    with pytest.raises(SystemExit, match="no checkpoint at or before 0 facts"):
        main(["bench", "learn-forget", "--report", str(tmp_path / "run"), "--at-facts", "0",
              "--out", str(tmp_path / "r0")])


@pytest.mark.slow  # three runs of the worker's teaching, its questions written by the model
def test_the_service_teaches_in_its_batches_and_a_stopped_run_resumes_where_it_stopped(
        tiny_lm, background_file, tmp_path, monkeypatch):
    """`--settings service`: the worker's own teaching (batches of SMFT_BATCH_FACTS), checkpoints where a batch
    crosses one, the first and most recent K facts; stopped after a checkpoint, a rerun resumes from the saved
    table and ends bit for bit where an uninterrupted run ends."""
    import torch

    import bench.learn_forget as learn_forget
    from bench.facts import generate_facts
    from bench.learn_forget import Baseline, Stream, run_method, stream_key
    from bench.methods import parse_method_spec
    from bench.table_log import TableLog
    from model.config import StepSchedule
    from model.evaluation import mean_nll
    from model.probe import read_probe

    lm, stats, corpus = tiny_lm
    for name, value in {"SMFT_BATCH_FACTS": "4", "SMFT_STEPS": "2", "SMFT_TOP_T": "6", "SMFT_LR": "0.5",
                        "SMFT_BACKGROUND": f'["{background_file}"]'}.items():
        monkeypatch.setenv(name, value)
    spec = parse_method_spec("service")
    assert (spec.method, spec.batch_facts, spec.top_t) == ("service", 4, 6)
    stream = Stream(tuple(generate_facts(6, seed=2)), tuple(read_probe()[:2]), tuple(corpus.heldout_texts),
                    Baseline(1.0, mean_nll(lm, corpus.heldout_texts)), StepSchedule(steps=2), eval_every=3)
    whole = run_method(lm, stats, spec, stream, tmp_path / "whole" / "service.json")
    # batches of 4 and 2: checkpoints after the batch that crosses 3, and at the end
    assert [c.facts_taught for c in whole.checkpoints] == [4, 6] and whole.steps == 4
    assert all(c.learned_first is not None and c.learned_recent is not None for c in whole.checkpoints)

    progress = tmp_path / "progress" / "service.json"
    teach_facts, calls = learn_forget.teach_facts, []

    def stop_at_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return teach_facts(*args, **kwargs)

    monkeypatch.setattr(learn_forget, "teach_facts", stop_at_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run_method(lm, stats, spec, stream, progress)
    assert [c["facts_taught"] for c in json.loads(progress.read_text())["checkpoints"]] == [4]
    monkeypatch.setattr(learn_forget, "teach_facts", teach_facts)
    taught = []
    monkeypatch.setattr(learn_forget, "teach_facts", lambda lm_, learner, facts, settings: taught.append(
        len(facts)) or teach_facts(lm_, learner, facts, settings))
    resumed = run_method(lm, stats, spec, stream, progress)
    assert taught == [2]  # only the last batch
    untimed = [[replace(c, seconds=0, answer_seconds=None) for c in r.checkpoints] for r in (resumed, whole)]
    assert untimed[0] == untimed[1] and resumed.steps == whole.steps

    # the saved deltas replay to the table and the ledger of which fact wrote which row, the same both ways
    key = stream_key(stream.facts, stream.schedule, stream.eval_every)
    replayed = []
    for saved in (progress, tmp_path / "whole" / "service.json"):
        table = copy.deepcopy(lm)
        facts, writers = TableLog(saved.with_suffix(""), key).replay(table, [4, 6])
        assert facts == 6 and len(writers) > 0
        replayed.append((table.memories[1].values, writers.to_tensors()))
    assert torch.equal(replayed[0][0], replayed[1][0]) and not torch.equal(replayed[0][0], lm.memories[1].values)
    (resumed_rows, names), (whole_rows, whole_names) = (w for _, w in replayed)
    assert names == whole_names and all(torch.equal(resumed_rows[k], whole_rows[k]) for k in ("keys", "facts"))


@pytest.mark.slow  # a run of the worker's teaching, its questions written by the model
def test_a_saved_run_asked_with_notes_is_its_own_table_with_the_notes_before_each_question(
        tiny_lm, background_file, tmp_path, monkeypatch):
    """`--notes`: nothing trained; each checkpoint's table replayed from the run's deltas (so the held-out NLL is
    the run's own) and asked with the taught statements BM25 finds in the prompt; kept beside the run, resumed."""
    import bench.learn_forget as learn_forget
    import bench.retrieval as retrieval
    from bench.facts import generate_facts
    from bench.learn_forget import Baseline, Stream, ask_with_notes, progress_file, read_results, run_method
    from bench.methods import parse_method_spec
    from model import evaluation
    from model.config import StepSchedule
    from model.evaluation import mean_nll
    from model.probe import read_probe

    lm, stats, corpus = tiny_lm
    for name, value in {"SMFT_BATCH_FACTS": "4", "SMFT_STEPS": "2", "SMFT_TOP_T": "6", "SMFT_LR": "0.5",
                        "SMFT_BACKGROUND": f'["{background_file}"]'}.items():
        monkeypatch.setenv(name, value)
    spec = parse_method_spec("service")
    stream = Stream(tuple(generate_facts(6, seed=2)), tuple(read_probe()[:2]), tuple(corpus.heldout_texts),
                    Baseline(1.0, mean_nll(lm, corpus.heldout_texts)), StepSchedule(steps=2), eval_every=3)
    progress = tmp_path / "run" / "progress"
    with pytest.raises(FileNotFoundError, match="run the setting first"):
        ask_with_notes(lm, spec, stream, progress, 0.5)
    run = run_method(lm, stats, spec, stream, progress_file(progress, spec))

    monkeypatch.setattr(learn_forget, "teach_facts", lambda *a, **k: pytest.fail("taught instead of replayed"))
    prompts, read_memory, contrasted = record_answers(monkeypatch, retrieval)
    noted = ask_with_notes(lm, spec, stream, progress, 0.0)
    assert noted.spec.notes == 0.0 and noted.spec.label.startswith(spec.label)
    assert "notes 0%+ of content words and a name" in noted.spec.label
    assert [c.facts_taught for c in noted.checkpoints] == [4, 6] and noted.steps == run.steps
    assert [(c.seconds, c.steps, c.nll_change) for c in noted.checkpoints] == \
        [(c.seconds, c.steps, c.nll_change) for c in run.checkpoints]  # the run's own table at each checkpoint
    assert run.final.nll_change != 0.0  # (which teaching moved)
    for fact in stream.facts[:4]:  # asked at the first checkpoint with its own statement among the notes
        assert any(fact.question in p and f"- {fact.fact.text}" in p for p in prompts)
    assert all(read_memory.values()) and not any(contrasted.values())

    scoped = ask_with_notes(lm, spec, stream, progress, 0.5, scoped=True)  # the memory only where a note is found
    assert scoped.spec.scoped and scoped.spec.label.endswith("; memory only if noted or named")
    assert [c.nll_change for c in scoped.checkpoints] == [c.nll_change for c in run.checkpoints]
    assert all(read_memory[f.question] for f in stream.facts)  # each taught question finds its note
    assert not any(read_memory[q.question] for q in stream.probe)  # real capitals find no fictional fact's

    contrasted.clear()  # as the API decodes an answer with notes: against version 0 without them
    trusted = ask_with_notes(lm, spec, stream, progress, 0.5, scoped=True, contrast=1.0)
    assert trusted.spec.contrast == 1.0 and trusted.spec.label.endswith("; memory only if noted or named; contrast 1")
    assert [c.nll_change for c in trusted.checkpoints] == [c.nll_change for c in run.checkpoints]
    assert all(contrasted[f.question] for f in stream.facts) and not any(contrasted[q.question] for q in stream.probe)

    redone: list[str] = []  # as the API's SMFT_NOTE_GROUNDING: an answer taking nothing from its notes asked again
    again = evaluation.again_without_notes
    monkeypatch.setattr(retrieval, "again_without_notes", lambda lm, answers, questions, grounded, *a: (
        redone.extend(q for q, g in zip(questions, grounded, strict=True) if g is not None),
        again(lm, answers, questions, grounded, *a))[1])
    grounded = ask_with_notes(lm, spec, stream, progress, 0.5, scoped=True, contrast=1.0, grounding=True)
    assert grounded.spec.grounding and grounded.spec.label.endswith("; contrast 1; grounded")
    assert set(redone) >= {f.question for f in stream.facts}  # every taught question has notes to check against

    monkeypatch.setattr(learn_forget, "checkpoint", lambda *a, **k: pytest.fail("asked again instead of resumed"))
    assert ask_with_notes(lm, spec, stream, progress, 0.0) == noted
    assert {(r.spec.notes, r.spec.scoped, r.spec.contrast, r.spec.grounding)
            for r in read_results([tmp_path / "run"])} == {(None, False, None, False), (0.0, False, None, False),
                                                           (0.5, True, None, False), (0.5, True, 1.0, False),
                                                           (0.5, True, 1.0, True)}  # the run and its notes, apart
    with pytest.raises(ValueError, match="notes go with the memory"):
        parse_method_spec("retrieval").__class__("retrieval", 0.0, notes=0.5)


def test_sparse_labels_name_the_memory_shape():
    from bench.methods import MethodSpec, memory_tag
    from model.config import MemoryConfig

    assert memory_tag(MemoryConfig(n_keys=512, value_dtype="float32"), [24]) == "layers 24, 262,144 slots, context 1"
    assert memory_tag(MemoryConfig(n_keys=256, context_weight=0.0, value_dtype="float32"), [15]) == \
        "layers 15, 65,536 slots, context 0"
    assert memory_tag(MemoryConfig(n_keys=512, context_weight=4.0, value_dtype="float32"), [15, 24]) == \
        "layers 15,24, 262,144 slots, context 4"
    assert memory_tag(MemoryConfig(n_keys=1024, value_dtype="bfloat16"), [24]) == \
        "layers 24, 1,048,576 slots, context 1, bfloat16"
    assert MethodSpec("sparse", 1.0, memory="layers 24").label == "sparse tfidf t=500 lr=1 [layers 24]"
    assert MethodSpec("sparse", 1.0).label == "sparse tfidf t=500 lr=1"
    assert MethodSpec("sparse", 1e4, optimizer="sgd", memory="context 4").label == \
        "sparse tfidf t=500 lr=10000 sgd [context 4]"
    assert MethodSpec("sparse", 1.0, max_row_norm=30.0).label == "sparse tfidf t=500 lr=1 cap=30"
    assert MethodSpec("sparse", 1.0, trained_slot_weight=0.0).label == "sparse tfidf t=500 lr=1 reuse=0"



def test_the_service_label_names_every_teaching_setting_that_changes_what_it_learns():
    """The label is what a resumed run is matched by: two service settings must never share one."""
    from bench.methods import service_spec
    from worker.settings import WorkerSettings

    default = service_spec(WorkerSettings()).label
    assert "10 steps" in default and "8 neighbours" in default and "answered by the fact's own statement" in default
    others = [WorkerSettings(loss_threshold=0.5, max_steps=25), WorkerSettings(neighbours_alike=True),
              WorkerSettings(keep_weight=1e-2), WorkerSettings(neighbour_reads=4), WorkerSettings(batch_facts=1),
              WorkerSettings(answer_reads=1), WorkerSettings(trained_slot_weight=0.5),
              WorkerSettings(max_row_norm=100.0), WorkerSettings(max_row_norm=None), WorkerSettings(optimizer="sgd"),
              WorkerSettings(ranking="tf"), WorkerSettings(question_answer="statement"),
              WorkerSettings(capped_slot_weight=0.0)]
    labels = [service_spec(s).label for s in others]
    assert "to loss 0.5 (at most 25 steps)" in labels[0] and "8 alike neighbours" in labels[1]
    assert default.startswith("service: batches of 4, t=500, lr=1, per fact")  # the defaults' files still resume
    assert "reuse=0.5" in labels[6] and "cap=100" in labels[7] and "no cap" in labels[8]
    assert labels[-1].endswith(", rows at the cap 0")
    assert len({default, *labels}) == len(others) + 1
    on_a_table = replace(service_spec(WorkerSettings()), memory="layers 24, 1,048,576 slots")
    assert on_a_table.label == default and on_a_table.title == f"{default} [layers 24, 1,048,576 slots]"


@pytest.mark.slow  # the worker's teaching, its questions written by the model, for two baselines
def test_full_finetuning_and_lora_are_taught_the_services_examples_in_its_batches(
        tiny_lm, background_file, tmp_path, monkeypatch):
    """`service:full:LR`, `service:lora:LR`: the worker's teaching (its questions, its batches of SMFT_BATCH_FACTS)
    training the whole model or LoRA adapters; the value table stays as it was, and each is matched apart from
    the sparse service and the one-fact-per-step baselines."""
    import torch

    import bench.learn_forget as learn_forget
    from bench.facts import generate_facts
    from bench.learn_forget import Baseline, Stream, at_matched_learning, run_method
    from bench.methods import MethodSpec, parse_method_spec
    from model.config import StepSchedule
    from model.evaluation import mean_nll
    from model.learners import FullFinetuneLearner, LoraLearner
    from model.probe import read_probe

    lm, stats, corpus = tiny_lm
    for name, value in {"SMFT_BATCH_FACTS": "3", "SMFT_STEPS": "2", "SMFT_TOP_T": "6",
                        "SMFT_BACKGROUND": f'["{background_file}"]'}.items():
        monkeypatch.setenv(name, value)
    service = parse_method_spec("service")
    full, lora = parse_method_spec("service:full:1e-4"), parse_method_spec("service:lora:1e-3")
    assert (full.trainer, full.lr, full.batch_facts, full.kind, full.memory_only) == ("full", 1e-4, 3,
                                                                                       "service full", False)
    assert full.label.startswith("service: full finetuning lr=0.0001, batches of 3, per fact, 2 steps, questions on")
    assert lora.label.startswith("service: LoRA lr=0.001, batches of 3") and lora.label != service.label
    assert service.trainer == "sparse" and service.memory_only and service.kind == "service"
    for bad in ("service:sgd:1", "service:full", "service:full:1:2"):
        with pytest.raises(ValueError, match="service:full:LR"):
            parse_method_spec(bad)
    with pytest.raises(ValueError, match="trainer"):
        MethodSpec("sparse", 1.0, trainer="full")

    stream = Stream(tuple(generate_facts(4, seed=2)), tuple(read_probe()[:2]), tuple(corpus.heldout_texts),
                    Baseline(1.0, mean_nll(lm, corpus.heldout_texts)), StepSchedule(steps=2), eval_every=4)
    taught = []
    teach_facts = learn_forget.teach_facts
    monkeypatch.setattr(learn_forget, "teach_facts", lambda lm_, learner, facts, settings: taught.append(
        (type(learner), len(facts))) or teach_facts(lm_, learner, facts, settings))
    values = lm.memories[1].values.detach().clone()
    results = [run_method(lm, stats, spec, stream, tmp_path / f"{spec.kind}.json") for spec in (full, lora)]
    assert taught == [(FullFinetuneLearner, 3), (FullFinetuneLearner, 1),
                                                          (LoraLearner, 3), (LoraLearner, 1)]
    assert [c.facts_taught for r in results for c in r.checkpoints] == [4, 4] and all(r.steps == 4 for r in results)
    assert torch.equal(lm.memories[1].values, values)  # each ran on its own copy of version 0
    assert not (tmp_path / "service full").exists()  # no table deltas: the table is not what it trains
    saved = learn_forget.MethodResult.from_dict(json.loads((tmp_path / "service full.json").read_text()))
    assert saved.spec == full  # a stopped run is matched to its setting by this
    assert set(at_matched_learning(results, 0.0)) == {"service full", "service lora"}


def test_settings_on_the_command_line_parse_into_method_specs():
    from bench.methods import MethodSpec
    from bench.methods import parse_method_spec as _method_spec

    assert _method_spec("sparse:1e4:50:tf:sgd") == MethodSpec("sparse", 1e4, 50, "tf", "sgd")
    assert _method_spec("full:1e-5") == MethodSpec("full", 1e-5)
    assert _method_spec("sparse:1:500:tfidf:adam:30") == MethodSpec("sparse", 1.0, max_row_norm=30.0)
    with pytest.raises(ValueError, match="optimizer"):
        _method_spec("sparse:1:50:tfidf:rmsprop")
    with pytest.raises(ValueError, match="max_row_norm"):  # at parse time, before version 0 is prepared
        _method_spec("sparse:1:500:tfidf:adam:-5")
    assert _method_spec("sparse:1:500:tfidf:adam::0.1") == MethodSpec("sparse", 1.0, trained_slot_weight=0.1)
    with pytest.raises(ValueError, match="at most 7 fields"):
        _method_spec("sparse:1:500:tfidf:adam:30:0.1:9")


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_setting_ends_only_its_own_process_and_reports_its_progress(tmp_path):
    from concurrent.futures import Future, ThreadPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from bench.learn_forget import Checkpoint, MethodResult, in_own_process, result_or_progress
    from bench.methods import MethodSpec

    with ThreadPoolExecutor(2) as pool:
        killed, alive = pool.submit(in_own_process, _die), pool.submit(in_own_process, os.getppid)
    with pytest.raises(BrokenProcessPool):
        killed.result()
    assert alive.result() == os.getpid()  # the sibling ran to its end in its own process

    spec = MethodSpec("full", 1e-4)
    saved = MethodResult(spec, [Checkpoint(10, 0.3, 0.1, -0.5, 0.4, 99.0, 100, 0.5)], 100)
    progress = tmp_path / "full.json"
    progress.write_text(json.dumps(saved.as_dict()))
    assert result_or_progress(spec, killed, str(progress)).as_dict() == saved.as_dict()
    assert result_or_progress(spec, killed, str(tmp_path / "none.json")) is None  # died before a checkpoint
    done: Future = Future()
    done.set_result(saved)
    assert result_or_progress(spec, done, None) is saved


def test_settings_that_stopped_at_different_points_are_matched_where_all_of_them_were():
    from bench.learn_forget import Checkpoint, MethodResult, at_matched_learning
    from bench.methods import MethodSpec

    def point(facts: int, learned: float, retention: float) -> Checkpoint:
        return Checkpoint(facts, learned, learned, retention, 0.1, 1.0, 10 * facts, 0.9)

    # lr 1e-3 learned more than lr 3e-3 after 5 facts; judged at its own last checkpoint (20
    # facts, 5%) it would lose to 3e-3's (10 facts, 10%), which stopped before learning fell further.
    ran_on = MethodResult(MethodSpec("lora", 1e-3), [point(5, 0.4, -0.6), point(10, 0.2, -0.9),
                                                      point(20, 0.05, -0.8)], 200)
    stopped = MethodResult(MethodSpec("lora", 3e-3), [point(5, 0.2, -0.9), point(10, 0.1, -1.0)], 100)
    reached = MethodResult(MethodSpec("full", 1e-4), [point(5, 0.9, -0.6), point(10, 0.4, -0.7)], 100)
    gentler = MethodResult(MethodSpec("full", 3e-5), [point(5, 0.9, -0.1), point(10, 0.95, -0.2)], 100)
    chosen = at_matched_learning([ran_on, stopped, reached, gentler], target=0.9)
    assert chosen["lora"] is ran_on  # the better learner after 10 facts (20% against 10%)
    assert chosen["full"] is gentler  # after 10 facts only lr 3e-5 still answers 90%
    assert at_matched_learning([ran_on, stopped], 0.9)["lora"] is ran_on
    assert at_matched_learning([ran_on], 0.9)["lora"] is ran_on
    # Evaluated only after 30 facts, later than lr 3e-3 stopped: no common point, so last checkpoints.
    sparse = MethodResult(MethodSpec("sparse", 1.0), [point(30, 0.9, 0.0)], 300)
    assert at_matched_learning([stopped, sparse], 0.9) == {"lora": stopped, "sparse": sparse}


def test_one_setting_from_two_runs_is_told_apart_by_its_runs_folder(tmp_path):
    from bench.learn_forget import Checkpoint, MethodResult, read_results
    from bench.methods import MethodSpec

    spec = MethodSpec("service", 1.0, batch_facts=4, teaching="per fact, 10 steps")
    other = MethodSpec("service", 1.0, batch_facts=1, teaching="per fact, 10 steps")
    for folder, specs in (("seed0", [spec, other]), ("seed1", [spec])):  # the same settings on two seeds' streams
        for i, s in enumerate(specs):
            path = tmp_path / folder / "progress" / f"{i}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            result = MethodResult(s, [Checkpoint(100, 0.8, 0.3, 0.0, 0.01, 600.0, 250, 0.9)], 250)
            path.write_text(json.dumps(result.as_dict()))
    results = read_results([tmp_path / "seed0", tmp_path / "seed1"])
    assert [r.spec.title for r in results] == [f"{spec.title} (seed0)", other.title, f"{spec.title} (seed1)"]
    assert {r.spec.label for r in results} == {spec.label, other.label}  # the resume key is untouched
    assert [r.spec.title for r in read_results([tmp_path / "seed1"])] == [spec.title]  # alone: as it was


def test_the_report_counts_the_probes_capital_questions_lost_apart():
    from bench.learn_forget import Checkpoint, MethodResult
    from bench.methods import MethodSpec
    from bench.report import learn_forget_probe_kinds

    def point(facts: int, probe_missed: list[int] | None) -> Checkpoint:
        return Checkpoint(facts, 0.8, 0.3, 0.0, 0.01, 60.0, 25, 0.9, probe_missed=probe_missed)

    result = MethodResult(MethodSpec("sparse", 1.0), [point(5, None), point(10, [1, 2, 7]), point(20, [2, 3])], 50)
    table = learn_forget_probe_kinds(result, capitals={2, 3, 4})
    assert table is not None and "| 10 | 1 | 2 |" in table and "| 20 | 2 | 0 |" in table
    assert "| 5 |" not in table  # written before the missed lists were recorded
    assert learn_forget_probe_kinds(MethodResult(MethodSpec("sparse", 1.0), [point(5, None)], 5), {2}) is None


def test_one_relations_stream_is_its_facts_of_the_whole_stream(tmp_path):
    from bench.facts import facts_of_kinds, generate_facts

    whole = generate_facts(120, seed=1)
    capitals = facts_of_kinds(10, 1, ["capital"])
    assert capitals == [f for f in whole if f.kind == "capital"] and len(capitals) == 10
    two = facts_of_kinds(5, 1, ["capital", "author"])
    assert two == [f for f in whole if f.kind in ("capital", "author")][:5]
    with pytest.raises(ValueError, match="unknown relation capitol; the relations are inventor, capital"):
        facts_of_kinds(5, 1, ["capitol"])
    with pytest.raises(SystemExit, match="--kinds: unknown relation"):
        main(["bench", "learn-forget", "--kinds", "capitol", "--settings", "retrieval", "--facts", "2",
              "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()  # refused before anything is prepared


def test_methods_are_matched_at_the_most_learning_that_every_method_reaches():
    from bench.learn_forget import Checkpoint, MethodResult, at_matched_learning, common_learning
    from bench.methods import MethodSpec

    def run(method: str, lr: float, learned: float, retention: float) -> MethodResult:
        return MethodResult(MethodSpec(method, lr), [Checkpoint(100, learned, learned, retention, 0.1, 1.0)], 1000)

    strong = run("sparse", 1.0, 0.9, -0.02)
    gentle = run("sparse", 0.1, 0.35, -0.001)  # learns as much as full finetuning's best, forgets less
    too_gentle = run("sparse", 0.01, 0.05, 0.0)  # forgets least, but learns less than the level
    full_best, full_low = run("full", 3e-5, 0.3, -0.4), run("full", 1e-5, 0.1, -0.2)
    results = [strong, gentle, too_gentle, full_best, full_low]
    assert common_learning(results) == 0.3  # full finetuning never learns more than 30%
    chosen = at_matched_learning(results, common_learning(results))
    assert chosen == {"sparse": gentle, "full": full_best}
    lora = run("lora", 1e-3, 0.05, -0.7)
    assert common_learning([*results, lora]) == 0.05
    assert at_matched_learning([*results, lora], 0.05)["sparse"] is too_gentle
    assert common_learning([strong]) == 0.9  # one method: its own best


def test_the_default_grid_starts_from_the_workers_setting_and_spans_what_matching_needs(monkeypatch):
    from bench.methods import MethodSpec, default_settings
    from worker.settings import WorkerSettings

    def _default_settings():
        return default_settings(WorkerSettings().sparse_config())

    specs = _default_settings()
    assert specs[0] == MethodSpec("sparse", 1.0, 500, max_row_norm=250.0)  # what the worker trains with
    sparse = [s for s in specs if s.method == "sparse"]
    assert len({s.top_t for s in sparse}) >= 3 and {s.ranking for s in sparse} == {"tfidf", "tf"}
    assert min(s.lr for s in sparse) <= 0.1  # low enough to match the baselines' learning
    assert any(s.max_row_norm is None for s in sparse)  # the paper's uncapped step
    assert {s.method for s in specs} == {"sparse", "full", "lora"}
    assert all(len([s for s in specs if s.method == m]) >= 2 for m in ("full", "lora"))  # a sweep each
    monkeypatch.setenv("SMFT_LR", "0.5")
    monkeypatch.setenv("SMFT_MAX_ROW_NORM", "none")
    assert _default_settings()[0] == MethodSpec("sparse", 0.5, 500)


def test_retrieval_puts_the_statements_that_match_a_question_before_it(tiny_lm):
    from bench.retrieval import Retriever
    from model.facts import Fact

    lm, _, _ = tiny_lm
    retriever = Retriever(notes=2)
    assert retriever.retrieve("Who invented the Zorblax engine?") == []
    retriever.add([Fact("Mira Quell invented the Zorblax engine.", paraphrases=("The Zorblax engine is Mira's.",)),
                   Fact("The river Tond flows into the Keld sea."), Fact("Paris is the capital of France.")])
    assert retriever.retrieve("Who invented the Zorblax engine?") == ["Mira Quell invented the Zorblax engine."]
    assert retriever.retrieve("Where does the Tond flow?")[0] == "The river Tond flows into the Keld sea."
    prompt = retriever.prompt(lm.tokenizer, "who made the zorblax engine")
    assert "- Mira Quell invented the Zorblax engine." in prompt and prompt.rstrip().endswith("assistant")
    assert "notes" not in retriever.prompt(lm.tokenizer, "What is blue?")  # nothing matches: asked as it is
    # with a floor, a note sharing one word of three ("capital") stays out; one holding them all comes in
    assert retriever.retrieve("What is the capital of Peru?")[0] == "Paris is the capital of France."
    careful = Retriever(notes=2, min_match=0.5)
    careful.add([Fact("Mira Quell invented the Zorblax engine."), Fact("Paris is the capital of France.")])
    assert careful.retrieve("What is the capital of Peru?") == []
    assert careful.retrieve("who invented the zorblax engine") == ["Mira Quell invented the Zorblax engine."]


def test_retrieval_trains_nothing_and_answers_with_the_notes_in_the_prompt(tiny_lm, monkeypatch):
    import bench.retrieval as retrieval
    from bench.facts import generate_facts
    from bench.learn_forget import Baseline, Stream, run_method
    from bench.methods import parse_method_spec
    from model.config import StepSchedule
    from model.evaluation import mean_nll
    from model.probe import read_probe

    lm, stats, corpus = tiny_lm
    spec = parse_method_spec("retrieval")
    assert spec.label == "retrieval: BM25, top 3 statements in the prompt"
    assert parse_method_spec("retrieval:0.5").label.endswith("holding 50%+ of the question's words")
    with pytest.raises(ValueError, match="MIN_MATCH"):
        parse_method_spec("retrieval:2")
    prompts, _, _ = record_answers(monkeypatch, retrieval)
    facts = generate_facts(3, seed=4)
    stream = Stream(tuple(facts), tuple(read_probe()[:2]), tuple(corpus.heldout_texts),
                    Baseline(1.0, mean_nll(lm, corpus.heldout_texts)), StepSchedule(steps=2), eval_every=3)
    result = run_method(lm, stats, spec, stream)
    final = result.final
    assert result.steps == 0 and final.facts_taught == 3 and final.nll_change == 0.0  # the model is untouched
    assert final.answer_seconds is not None and final.answer_seconds > 0
    asked = {f.question: f for f in facts}
    for p in prompts:
        for question, fact in asked.items():
            if question in p:  # each taught question is asked with its own statement among the notes
                assert f"- {fact.fact.text}" in p
