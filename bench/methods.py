"""The settings a learn-forget run compares: one `MethodSpec` per method and learning rate, how they are
written on the command line, and the grid a plain `smft bench learn-forget` runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from model.config import MemoryConfig, OptimizerName, RankingMode, SparseConfig
from model.learners import FullFinetuneLearner, Learner, LoraLearner, SparseMemoryLearner
from model.lm import MemoryLM
from model.notes import NOTES
from model.statistics import SlotStats
from worker.settings import WorkerSettings

WORKER_ROW_CAP = WorkerSettings.model_fields["max_row_norm"].default  # the service's default cap on a row's norm
TRAINERS = {"sparse": "", "full": "full finetuning", "lora": "LoRA"}  # MethodSpec.trainer -> its name in labels


@dataclass(frozen=True)
class MethodSpec:
    # sparse | full | lora | service (the worker's own teaching: its batches, questions, neighbours) | retrieval
    # (nothing trained: the taught statements indexed by BM25, the best few put into the prompt; bench/retrieval.py)
    method: str
    lr: float
    top_t: int = 500
    ranking: RankingMode = "tfidf"
    optimizer: OptimizerName = "adam"  # sparse only
    max_row_norm: float | None = None  # sparse only: SparseConfig.max_row_norm
    trained_slot_weight: float = 1.0  # sparse only: SparseConfig.trained_slot_weight
    # Sparse only: the memory's shape (memory_tag), e.g. "layers 24, 262,144 slots, context 4". Files
    # written before every part was named say how it differed from that time's default (layer 15,
    # 65,536 slots, context 0): "layers 24", or "" for that default itself.
    memory: str = ""
    batch_facts: int = 1  # service only: facts per batch, as SMFT_BATCH_FACTS
    teaching: str = ""  # service only: the rest of the worker's teaching settings, so a resumed run is the same one
    min_match: float = 0.0  # retrieval only: the share of the question's words a note must hold (Retriever)
    # service only: what the worker's teaching trains. "sparse" is the service; "full" and "lora" train the whole
    # model or LoRA adapters on the same examples (its questions, paraphrases, reversed questions) in the same
    # batches, so the baselines meet the stream as the service does, not one fact per step.
    trainer: str = "sparse"
    # sparse and service only: the memory asked with notes as well, the taught statements BM25 finds holding this
    # share of the question's words put into the prompt (bench/retrieval.py); None: the memory alone
    notes: float | None = None
    # with notes: a question that finds none and names nothing taught is answered as version 0 (SMFT_MEMORY_SCOPE)
    scoped: bool = False
    # with notes: an answer that has notes is decoded against version 0 given its prompt without them, at most this
    # alpha (SMFT_NOTE_CONTRAST, model/contrast.py); None: the notes alone
    contrast: float | None = None
    # with notes: an answer that took nothing from its notes is made again without them (SMFT_NOTE_GROUNDING)
    grounding: bool = False
    # Which run's files a report read it from, where one setting comes from several runs (another seed's stream):
    # shown in its title, never in its label (the resume key). Empty in the files runs write.
    run: str = ""

    def __post_init__(self) -> None:
        if self.method not in ("sparse", "full", "lora", "service", "retrieval"):
            raise ValueError(f"method must be sparse, full, lora, service or retrieval, got {self.method!r}")
        if self.trainer not in TRAINERS or (self.trainer != "sparse" and self.method != "service"):
            raise ValueError(f"trainer must be one of {', '.join(TRAINERS)}, and other than sparse only for "
                             f"service, got {self.trainer!r} for {self.method}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.max_row_norm is not None and self.max_row_norm <= 0:  # refused before version 0 is prepared
            raise ValueError(f"max_row_norm must be > 0, got {self.max_row_norm}")
        if self.notes is not None and (not self.memory_only or not 0 <= self.notes <= 1):
            raise ValueError(f"notes go with the memory (sparse or service) and hold a share in [0, 1], got "
                             f"{self.notes} for {self.method}")
        if self.scoped and self.notes is None:
            raise ValueError("a memory scoped by its notes needs notes")
        if self.contrast is not None and (self.notes is None or self.contrast < 0):
            raise ValueError(f"a note contrast needs notes and is >= 0, got {self.contrast}")
        if self.grounding and self.notes is None:
            raise ValueError("grounding an answer in its notes needs notes")
        if not 0 <= self.trained_slot_weight <= 1:
            raise ValueError(f"trained_slot_weight must be in [0, 1], got {self.trained_slot_weight}")

    @property
    def label(self) -> str:
        if self.notes is None:
            return self._label
        # (short: the label names the progress file) since session 34 the floor counts content words and names
        scope = "; memory only if noted or named" if self.scoped else ""
        contrast = "" if self.contrast is None else f"; contrast {self.contrast:g}"
        grounding = "; grounded" if self.grounding else ""
        return f"{self._label}, notes {self.notes:.0%}+ of content words and a name{scope}{contrast}{grounding}"

    @property
    def _label(self) -> str:
        if self.method == "sparse":
            shape = f" [{self.memory}]" if self.memory else ""
            optimizer = "" if self.optimizer == "adam" else f" {self.optimizer}"
            cap = "" if self.max_row_norm is None else f" cap={self.max_row_norm:g}"
            reuse = "" if self.trained_slot_weight == 1.0 else f" reuse={self.trained_slot_weight:g}"
            return f"sparse {self.ranking} t={self.top_t} lr={self.lr:g}{optimizer}{cap}{reuse}{shape}"
        if self.method == "service" and self.trainer != "sparse":  # rows are the sparse learner's: not named
            return (f"service: {TRAINERS[self.trainer]} lr={self.lr:g}, batches of {self.batch_facts}, "
                    f"{self.teaching}")
        if self.method == "service":  # what differs from the worker's defaults, so no two settings share a label
            rows = "".join(part for part, default in (
                (f", {self.ranking}", self.ranking == "tfidf"), (f", {self.optimizer}", self.optimizer == "adam"),
                (f", cap={self.max_row_norm:g}" if self.max_row_norm is not None else ", no cap",
                 self.max_row_norm == WORKER_ROW_CAP),
                (f", reuse={self.trained_slot_weight:g}", self.trained_slot_weight == 1.0)) if not default)
            return f"service: batches of {self.batch_facts}, t={self.top_t}, lr={self.lr:g}{rows}, {self.teaching}"
        if self.method == "retrieval":
            floor = f", holding {self.min_match:.0%}+ of the question's words" if self.min_match else ""
            return f"retrieval: BM25, top {self.top_t} statements in the prompt{floor}"
        return f"{self.method} lr={self.lr:g}"

    @property
    def kind(self) -> str:
        """What settings are compared within at matched learning: the method, or for the service's teaching
        with another trainer, both ("service full")."""
        return f"service {self.trainer}" if self.method == "service" and self.trainer != "sparse" else self.method

    @property
    def memory_only(self) -> bool:
        """The whole state it trains is the memory's value table (and who wrote its rows)."""
        return self.method == "sparse" or (self.method == "service" and self.trainer == "sparse")

    @property
    def title(self) -> str:
        """The label with the memory's shape, for tables and plots. A service label leaves the shape out (it is the
        resume key, and a run on another table has a folder of its own), so two tables' runs shown together would
        otherwise read alike."""
        title = f"{self.label} [{self.memory}]" if self.method == "service" and self.memory else self.label
        return f"{title} ({self.run})" if self.run else title

    def learner(self, lm: MemoryLM, stats: SlotStats) -> Learner:
        if self.method == "retrieval":
            raise ValueError("retrieval trains nothing: it has no learner (bench/retrieval.py)")
        if self.method == "service" and self.trainer == "sparse":
            return SparseMemoryLearner(lm, stats, self.worker_settings().sparse_config())
        if self.method == "sparse":
            config = SparseConfig(top_t=self.top_t, ranking=self.ranking, optimizer=self.optimizer, lr=self.lr,
                                  max_row_norm=self.max_row_norm, trained_slot_weight=self.trained_slot_weight)
            return SparseMemoryLearner(lm, stats, config)
        if "full" in (self.method, self.trainer):
            return FullFinetuneLearner(lm, lr=self.lr)
        return LoraLearner(lm, lr=self.lr)

    def worker_settings(self) -> WorkerSettings:
        """The worker's settings (SMFT_* variables apply, as in the worker) with this spec's batch and rows."""
        return WorkerSettings(batch_facts=self.batch_facts, top_t=self.top_t, lr=self.lr, ranking=self.ranking,
                              optimizer=self.optimizer, max_row_norm=self.max_row_norm,
                              trained_slot_weight=self.trained_slot_weight)


def service_spec(settings: WorkerSettings) -> MethodSpec:
    """The service's own teaching, as `settings` (the worker's) configure it."""
    config = settings.sparse_config()
    steps = (f"{settings.steps} steps" if settings.loss_threshold is None
             else f"to loss {settings.loss_threshold:g} (at most {settings.max_steps} steps)")
    teaching = (f"{'per fact' if settings.top_t_per_fact else 'per batch'}, {steps}, questions "
                f"{'on' if settings.synthetic_questions else 'off'}"
                + (", answered by the fact's own statement" if settings.question_answer == "fact" else "")
                + (" written from examples" if settings.synthetic_questions and settings.question_writer == "examples"
                   else "")
                + f", reversed "
                f"{'on' if settings.reversed_questions else 'off'}, {settings.neighbours_per_fact} "
                f"{'alike ' if settings.neighbours_alike else ''}neighbours "
                f"(rows {settings.neighbour_reads}+ of them read left out"
                + (f", {settings.answer_reads}+ where answers begin" if settings.answer_reads else "") + ")"
                + (f", locality {settings.keep_weight:g}" if settings.keep_weight else "")
                + (f", rows at the cap {settings.capped_slot_weight:g}" if settings.capped_slot_weight != 1 else ""))
    return MethodSpec("service", config.lr, config.top_t, config.ranking, config.optimizer, config.max_row_norm,
                      config.trained_slot_weight, batch_facts=settings.batch_facts, teaching=teaching)


def memory_tag(config: MemoryConfig, layers: Sequence[int]) -> str:
    """The memory's shape, for labels: the defaults change over time, so every part is named. The value dtype
    only when it is not float32, so that labels of runs made before it could change still match."""
    dtype = f", {config.value_dtype}" if config.value_dtype != "float32" else ""
    return (f"layers {','.join(map(str, layers))}, {config.num_slots:,} slots, "
            f"context {config.context_weight:g}{dtype}")


def parse_method_spec(text: str) -> MethodSpec:
    """'sparse:LR[:T[:RANKING[:OPTIMIZER[:MAX_ROW_NORM[:TRAINED_SLOT_WEIGHT]]]]]', 'full:1e-5' or 'lora:1e-3'
    -> MethodSpec. An empty field keeps its default: 'sparse:1:500:tfidf:adam::0' has no cap. 'service' is
    the worker's own teaching with the worker's settings (SMFT_* variables); 'retrieval' trains nothing and
    puts the taught statements BM25 finds into the prompt, 'retrieval:0.5' only those holding half the question's
    words or more; 'service:full:1e-5' or 'service:lora:1e-3' give the worker's teaching (its examples, its
    batches) to full finetuning or LoRA at that learning rate."""
    if text.strip() == "service":
        return service_spec(WorkerSettings())
    if text.strip().startswith("service:"):
        _, *rest = text.strip().split(":")
        if len(rest) != 2 or rest[0] not in ("full", "lora"):
            raise ValueError(f"{text!r}: 'service', 'service:full:LR' or 'service:lora:LR'")
        return replace(service_spec(WorkerSettings()), trainer=rest[0], lr=float(rest[1]))
    if text.strip().startswith("retrieval"):
        _, *floor = text.strip().split(":")
        if len(floor) > 1 or not 0 <= (min_match := float(floor[0]) if floor else 0.0) <= 1:
            raise ValueError(f"{text!r}: 'retrieval' or 'retrieval:MIN_MATCH', MIN_MATCH in [0, 1]")
        return MethodSpec("retrieval", 0.0, top_t=NOTES, min_match=min_match)
    method, lr, *rest = text.strip().split(":")
    fields = (("top_t", int), ("ranking", str), ("optimizer", str), ("max_row_norm", float),
              ("trained_slot_weight", float))
    if len(rest) > len(fields):
        raise ValueError(f"{text!r}: at most {len(fields) + 2} fields")
    extra = {name: parse(value) for (name, parse), value in zip(fields[:len(rest)], rest, strict=True) if value}
    return MethodSpec(method, float(lr), **extra)


def default_settings(service: SparseConfig) -> list[MethodSpec]:
    """The grid a plain `smft bench learn-forget` runs: the worker's sparse setting (`service`), a few t,
    lower learning rates (to match the baselines' learning, which stays far below it on a
    one-fact-per-step stream), the paper's uncapped step and TF-only as ablations; full finetuning and
    LoRA at the learning rates that learned most in the 20-fact sweep and one gentler each."""
    worker = MethodSpec("sparse", service.lr, service.top_t, service.ranking, service.optimizer,
                        service.max_row_norm, service.trained_slot_weight)
    specs = [worker, *(replace(worker, top_t=t) for t in (250, 1000)),
             *(replace(worker, lr=lr) for lr in (0.3, 0.1)),
             replace(worker, max_row_norm=None), replace(worker, ranking="tf")]
    return specs + [MethodSpec("full", lr) for lr in (3e-5, 1e-4)] + [MethodSpec("lora", lr) for lr in (3e-4, 1e-3)]
