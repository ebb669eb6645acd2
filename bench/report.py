"""Every benchmark's output: its Markdown tables, its JSON file, and the one percentile they all use.

The benchmarks measure; this module only formats what they measured, so a table reads the same
whichever command printed it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.addressing import AnswerOverlap
    from bench.learn_forget import MethodResult
    from bench.load import PhaseReport
    from bench.speed import Timing
    from bench.usage import UsageResult
    from model.statistics import UsageReport


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile (0.5: the median of an odd count); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


# --- smft bench learn-forget ---------------------------------------------------------------------------
def learn_forget_table(results: Sequence[MethodResult], chosen: Mapping[str, MethodResult]) -> str:
    rows = []
    for r in results:
        c = r.final
        answered = "n/a" if c.probe_answered is None else f"{c.probe_answered:.0%}"
        latency = "n/a" if c.answer_seconds is None else f"{c.answer_seconds:.2f}"
        rows.append((r.spec.title, c.facts_taught, f"{c.learned:.0%}", f"{c.learned_f1:.2f}",
                     f"{c.retention_change:+.1%}", answered, f"{c.nll_change:+.1%}",
                     "n/a" if r.steps is None else r.steps, f"{c.seconds:.0f}", latency,
                     "yes" if chosen.get(r.spec.kind) is r else ""))
    return markdown_table(("setting", "facts", "learned (contains)", "learned F1", "retention F1 change",
                           "probe still answered", "held-out NLL change", "steps", "train seconds",
                           "answer seconds", "matched"), rows)


def learn_forget_curve(result: MethodResult) -> str:
    """One setting at every checkpoint: all taught facts, the first and most recent K, the probe, NLL."""
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    rows = [(c.facts_taught, share(c.learned), share(c.learned_recent), share(c.learned_first),
             share(c.probe_answered), f"{c.retention_change:+.1%}", f"{c.nll_change:+.1%}", f"{c.seconds:.0f}")
            for c in result.checkpoints]
    return f"{result.spec.title}:\n\n" + markdown_table(
        ("facts", "all taught answered", "most recent K", "first K still answered", "probe still answered",
         "retention F1 change", "held-out NLL change", "train seconds"), rows)


def learn_forget_churn(result: MethodResult) -> str | None:
    """From checkpoint to checkpoint: of the facts taught before the previous one, and of the probe, how many
    answered there are missed now (lost) and how many missed there are answered now (back). Forgetting that
    nets a few points can be many answers flipping both ways. None without the missed lists."""
    points = [c for c in result.checkpoints if c.missed is not None and c.probe_missed is not None]
    rows = []
    for before, now in itertools.pairwise(points):
        was, is_ = set(before.missed), set(now.missed)
        earlier = range(before.facts_taught)
        probe_was, probe_is = set(before.probe_missed), set(now.probe_missed)
        rows.append((f"{before.facts_taught} -> {now.facts_taught}",
                     sum(i in is_ and i not in was for i in earlier), sum(i in was and i not in is_ for i in earlier),
                     len(probe_is - probe_was), len(probe_was - probe_is)))
    if not rows:
        return None
    return f"{result.spec.title}, answers that changed between checkpoints:\n\n" + markdown_table(
        ("facts", "earlier facts lost", "earlier facts back", "probe lost", "probe back"), rows)


def learn_forget_probe_kinds(result: MethodResult, capitals: set[int]) -> str | None:
    """At every checkpoint, the probe questions lost that ask for a capital (by index) and the others: the stream
    teaches fictional capitals in the frame those questions are answered in, and over 1,000 facts they were most
    of what the probe lost. None without the missed lists."""
    points = [c for c in result.checkpoints if c.probe_missed is not None]
    if not points or not capitals:
        return None
    rows = [(c.facts_taught, len(set(c.probe_missed) & capitals), len(set(c.probe_missed) - capitals))
            for c in points]
    return f"{result.spec.title}, probe questions lost:\n\n" + markdown_table(
        ("facts", "capital questions lost", "other questions lost"), rows)


def matching_note(target: float, facts: int | None, results: Sequence[MethodResult]) -> str:
    note = (f"\"matched\": per method, the setting that forgets least (retention-probe F1) among those that "
            f"answer at least {target:.0%} of the taught facts, else the one that learns most.")
    if facts is not None and any(r.final.facts_taught != facts for r in results):
        note += (f" The settings stopped at different points; \"matched\" compares each as it stood after "
                 f"{facts} facts (`--report ... --at-facts {facts}` shows every setting there).")
    return note


# --- smft bench usage --------------------------------------------------------------------------------
def usage_tables(results: Sequence[UsageResult]) -> str:
    """One row per way of teaching (each fact asked every way), then the corrections."""
    taught = [r for r in results if r.name != "corrections"]
    out = []
    if taught:
        asks = list(taught[0].answered)
        out.append(markdown_table(
            ("taught as", "facts", *asks, "probe still answered", "explain names its post", "batches", "steps",
             "train s"),
            ((r.name, r.facts, *(f"{r.answered[a]:.0%}" for a in asks), f"{r.probe_answered:.0%}",
              "n/a" if r.explained is None else f"{r.explained:.0%}", r.batches, r.steps, f"{r.seconds:.0f}")
             for r in taught)))
    out += [markdown_table(("corrections", "new answer", "old answer gone", "neighbours kept", "probe still answered",
                            "batches", "steps", "train s"),
                           [(r.facts, *(f"{v:.0%}" for v in r.answered.values()), f"{r.probe_answered:.0%}",
                             r.batches, r.steps, f"{r.seconds:.0f}")])
            for r in results if r.name == "corrections"]
    return "\n\n".join(out)


# --- smft bench speed --------------------------------------------------------------------------------
def speed_tables(timings: Sequence[Timing], ratios: Mapping[str, float]) -> str:
    times = markdown_table(("what", "median ms", "min ms", "max ms", "runs",
                            "peak MB above the loaded model (load: its own)"),
                           ((t.name, f"{t.median_ms:g}", f"{t.min_ms:g}", f"{t.max_ms:g}", t.runs, f"{t.peak_mb:g}")
                            for t in timings))
    return times + "\n\n" + markdown_table(("ratio (same run)", "value"),
                                           ((k, f"{v:.2f}") for k, v in ratios.items()))


def service_tables(result: Mapping[str, Any]) -> str:
    """`smft bench speed --service`: the fact-to-answer path, the burst, memory, and the load phases."""
    latency = markdown_table(("what", "p50", "p95"), (
        (label, f"{result[key]['p50']:g}", f"{result[key]['p95']:g}")
        for key, label in (("fact_to_learned_ms", "202 to learned, ms"), ("fact_to_answer_ms", "202 to answer, ms"),
                           ("delta_propagation_ms", "published to second replica applied, ms"))))
    burst = result["burst"]
    rows = [(f"facts taught one every {result['every_s']:g} s",
             f"{result['facts']} (answered correctly: {result['answered_correctly']})"),
            (f"burst of {burst['facts']} facts: all learned in",
             f"{burst['seconds']:g} s ({burst['facts_per_min']:g} facts/min)")]
    rows += [(f"resident memory, {name}", f"{mb:g} MB") for name, mb in result["rss_mb"].items()]
    out = latency + "\n\n" + markdown_table(("what", "value"), rows)
    if result["load"]:
        from bench.load import PhaseReport

        out += "\n\n" + load_table([PhaseReport(**r) for r in result["load"]])
    return out


# --- smft bench load ---------------------------------------------------------------------------------
def load_table(reports: Sequence[PhaseReport]) -> str:
    return markdown_table(
        ("phase", "clients", "seconds", "queries", "errors", "p50 ms", "p99 ms", "queries/s", "facts sent", "learned"),
        ((r.name, r.clients, f"{r.seconds:g}", r.queries, r.query_errors + r.teach_errors, f"{r.p50_ms:g}",
          f"{r.p99_ms:g}", f"{r.queries_per_s:g}", r.facts_sent, r.facts_learned) for r in reports))


# --- smft addressing ---------------------------------------------------------------------------------
def usage_table(centred: Mapping[int, UsageReport], uncentred: Mapping[int, UsageReport]) -> str:
    rows = []
    for layer, report in centred.items():
        rows.append((layer, "raw hidden states", uncentred[layer].as_row()))
        rows.append((layer, "centred (version 0)", report.as_row()))
    return markdown_table(("layer", "addressing", "slots read", "reads by top 1% of slots", "usage entropy"), rows)


def overlap_table(overlap: Mapping[int, AnswerOverlap]) -> str:
    return markdown_table(("layer", "same fact, two phrasings", "same phrasing, other fact of the relation",
                           "other relation"), ((layer, row.as_row()) for layer, row in overlap.items()))


# --- smft bench forgetting ---------------------------------------------------------------------------
def forgetting_tables(result: Mapping[str, Any], texts: Mapping[str, str], examples: int = 12) -> str:
    """What `bench.forgetting.analyse` found: the summaries, then the first losses with the facts behind them."""
    probe, taught = result["probe"], result["taught"]

    def cut(text: str, width: int = 60) -> str:
        text = " ".join(text.split()).replace("|", "/")
        return text if len(text) <= width else text[:width - 1] + "…"

    def sources(loss: Mapping[str, Any]) -> str:
        return "; ".join(f"{s['share']:.0%} {cut(texts.get(s['fact_id'], s['fact_id']), 48)}" for s in loss["sources"])

    def back(loss: Mapping[str, Any]) -> str:
        return ", ".join(k for k, v in loss["brought_back"].items() if v) or "none"

    lines = [f"After {result['facts_taught']} facts: {probe['lost']} of the {probe['answered_by_version_0']} probe "
             f"questions version 0 answered are lost ({probe['taken_apart']} taken apart).", "",
             markdown_table(("probe questions lost", "share"),
                            [(k, f"{v:.0%}" if "share" in k or k.startswith(("brought", "by none")) else f"{v:.2f}")
                             for k, v in probe["summary"].items()])]
    if probe["losses"]:
        lines += ["", markdown_table(
            ("question", "version 0", "now", "parts at", "facts read there (share)", "brought back by"),
            [(cut(x["question"], 50), cut(x["expected"], 30), cut(x["now"], 30),
              f"{x['position']}: {x['expected_token']!r} -> {x['now_token']!r}", sources(x), back(x))
             for x in probe["losses"][:examples]])]
    if result.get("answered_by_relation"):
        lines += ["", markdown_table(("relation", "taught facts answered at the end"),
                                     [(kind, f"{a}/{n} ({a / n:.0%})") for kind, (a, n) in
                                      result["answered_by_relation"].items()])]
    if result.get("table"):
        lines += ["", markdown_table(("rows written", "rows", "writers: mean", "median", "one", "5 or more"),
                                     [(b["rows"], f"{b['count']:,}", f"{b.get('mean writers', 0):.1f}",
                                       f"{b.get('median writers', 0):.0f}", f"{b.get('one writer', 0):.0%}",
                                       f"{b.get('5+ writers', 0):.0%}") for b in result["table"]])]
    lines += ["", f"Taught facts answered at an earlier checkpoint and not at the end: {taught['lost_on_the_way']} "
                  f"({taught['taken_apart']} taken apart).", ""]
    lines.append(markdown_table(("taught facts lost", "share"),
                                [(k, f"{v:.0%}") for k, v in taught["summary"].items()]))
    if taught["losses"]:
        lines += ["", markdown_table(
            ("question", "answer", "now", "own / shared later / later only", "facts read there (share)"),
            [(cut(x["question"], 50), cut(x["answer"], 24), cut(x["now"], 30),
              f"{x['own']:.0%} / {x['shared_later']:.0%} / {x['later_only']:.0%}", sources(x))
             for x in taught["losses"][:examples]])]
    return "\n".join(lines)
