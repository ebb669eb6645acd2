"""Deployment settings, read from SMFT_* environment variables (and CLI flags that set them)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.config import MemoryConfig, QuestionAnswer, QuestionWriter, SparseConfig, StepSchedule, ValueDtype


class CommonSettings(BaseSettings):
    """What every process (worker, API) must agree on."""

    # "null" in a variable is None: how `smft serve` passes an unset optional setting on to its children.
    model_config = SettingsConfigDict(env_prefix="SMFT_", extra="ignore", env_parse_none_str="null")

    redis_url: str | None = Field(None, description="Redis URL; unset: `smft serve` starts a private redis-server")
    model: str = Field("smollm2", description="'smollm2' (default GGUF), a HF model directory or a .gguf file")
    data_dir: Path = Field(Path("var"), description="snapshots (and the private Redis' files)")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1 ...")
    namespace: str = Field("smft", description="prefix of every Redis key, so deployments can share a server")
    log_format: str = Field("json", pattern="^(json|text)$", description="log lines as JSON objects or plain text")

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"


class WorkerSettings(CommonSettings):
    batch_facts: int = Field(4, ge=1, le=256, description="facts taught together in one step batch")
    steps: int = Field(10, ge=1, le=1000, description="optimisation steps per batch")
    loss_threshold: float | None = Field(None, gt=0, description="stop a batch early below this loss")
    max_steps: int = Field(30, ge=1, le=1000, description="cap on steps when loss_threshold is set")
    top_t: int = Field(500, ge=1, description="value rows a batch may change (TF-IDF top-t)")
    top_t_per_fact: bool = Field(True, description="top_t counts per fact: n facts taught together change n * top_t")
    ranking: str = Field("tfidf", pattern="^(tfidf|tf|all)$")
    optimizer: str = Field("adam", pattern="^(adam|sgd)$")
    lr: float = Field(SparseConfig.lr, gt=0)
    # The paper's method has no cap (SparseConfig's default). Over 100 facts on the default memory, uncapped rows
    # raised held-out NLL 2.5%; capped at 250 it rose 0.95% at the same 91% learned (README, "The default
    # memory over 100 facts"); at 100 learning fell to 44%.
    max_row_norm: float | None = Field(250.0, gt=0, description="cap on a value row's L2 norm after every step "
                                       "('none': no cap)")
    trained_slot_weight: float = Field(SparseConfig.trained_slot_weight, ge=0, le=1, description="weight on the "
                                       "TF-IDF score of rows earlier facts trained (1: like any row, 0: never again)")
    capped_slot_weight: float = Field(SparseConfig.capped_slot_weight, ge=0, le=1, description="weight on the "
                                      "TF-IDF score of rows already at the norm cap, where a write only overwrites "
                                      "(1: like any row, 0: a full row never changes again)")
    synthetic_questions: bool = Field(True, description="let the model turn each statement into a question to train on")
    split_statements: bool = Field(True, description="a fact posted as several sentences (a paragraph of notes) "
                                   "is taught one statement at a time, each with its own questions and rows, under "
                                   "its one id")
    neighbours_per_fact: int = Field(8, ge=0, le=64, description="other names swapped into each fact's examples: "
                                     "rows those read often are the wording's, not the fact's, and never change "
                                     "(0: none)")
    neighbours_alike: bool = Field(False, description="each fact's neighbours are the names most like its subject "
                                   "(a country's are places, a person's are people) rather than names drawn at random")
    neighbour_reads: int = Field(SparseConfig.neighbour_reads, ge=1, description="neighbour names whose "
                                 "examples read a row that make it the wording's")
    answer_reads: int = Field(SparseConfig.answer_reads, ge=0, description="neighbour names whose examples read a "
                              "row where their answer begins that make it the answer's, never selected (0: off)")
    keep_weight: float = Field(SparseConfig.keep_weight, ge=0, description="weight of the locality penalty: what "
                               "the trained rows add where background text reads them, kept near zero (0: off)")
    # "fact": a paraphrase that opens with a name ("Luvoista's capital is Gortes.") no longer teaches every question
    # of its kind to open its answer with that name (docs/learn_forget.md, session 26; docs/usage.md, session 27).
    question_answer: QuestionAnswer = Field("fact", description="what a question the model wrote about a "
                                            "statement is taught to be answered by: 'statement', the one it was "
                                            "written from; 'fact', the fact's own (its first) statement")
    question_writer: QuestionWriter = Field("examples", description="how the model writes a question about each "
                                            "statement: 'examples', by continuing worked examples (the "
                                            "instructions only where those give none); 'instruction', asked to")
    reversed_questions: bool = Field(True, description="also teach each fact as the answer to a question about each "
                                     "other name in it, so it is found from that end too")
    n_keys: int = Field(MemoryConfig.n_keys, ge=2, description="sub-keys per half: slots = n_keys^2")
    heads: int = Field(MemoryConfig.heads, ge=1)
    topk: int = Field(MemoryConfig.topk, ge=1)
    memory_layers: str | None = Field(None, description="comma-separated decoder layers; default: the one at 80% "
                                      "of the depth")
    memory_context_weight: float = Field(MemoryConfig.context_weight, ge=0, description="weight of context-keyed "
                                         "addressing (IDF-weighted tokens read so far); 0: hidden state only")
    memory_answer_context_weight: float | None = Field(None, gt=0, description="the context weight where an "
                                                       "answer's first token is predicted ('none': the same as "
                                                       "memory_context_weight)")
    memory_value_dtype: ValueDtype = Field(MemoryConfig.value_dtype, description="how the value table is stored: "
                                           "bfloat16 takes half the memory (fixed for a deployment, like n_keys)")
    background: list[Path] = Field(default_factory=list, description="background text files (default: shipped corpus)")
    lease_ttl_s: float = Field(15.0, gt=0, description="leader lease; a standby takes over after it expires")
    max_attempts: int = Field(3, ge=1, description="tries before a fact goes to the dead-letter list")
    snapshot_every_versions: int = Field(25, ge=1)
    snapshot_every_s: float = Field(300.0, gt=0)
    monitor_every_versions: int = Field(10, ge=0, description="evaluate forgetting every M versions (0: off)")
    monitor_window: int = Field(32, ge=1, description="retention-probe questions per evaluation (rotating)")
    monitor_full_every: int = Field(10, ge=0, description="every Nth evaluation uses the whole probe (0: never)")
    monitor_probe: int = Field(0, ge=0, description="retention-probe questions the monitor uses, spread evenly over "
                               "the curated probe (0: all of it); fewer make version 0's baseline, recorded before "
                               "the first fact is taught, quicker. Fixed for a deployment once its baseline is kept")
    undo_keep_versions: int = Field(500, ge=0, description="undo records kept on disk, newest first (0: all); a "
                                    "fact taught in an older version can no longer be undone")
    fact_record_ttl_s: int = Field(0, ge=0, description="how long a fact's record stays in Redis once it is "
                                   "learned, failed or undone (0: for ever); after it, the fact is unknown to "
                                   "GET and DELETE, and explanations show its id without its text")
    # At most 5 s: a Redis reply that takes longer than the store's socket timeout (10 s) counts as Redis away.
    poll_ms: int = Field(1000, ge=10, le=5000, description="how long one queue read blocks")

    @field_validator("max_row_norm", "memory_answer_context_weight", mode="before")
    @classmethod
    def _none(cls, value: object) -> object:
        return unset_when_off(value)

    @property
    def journal_dir(self) -> Path:
        """Undo records, one per version (rows before and after), read by DELETE /v1/facts/{id}."""
        return self.data_dir / "journal"

    def memory_config(self) -> MemoryConfig:
        layers = tuple(int(x) for x in self.memory_layers.split(",")) if self.memory_layers else None
        return MemoryConfig(n_keys=self.n_keys, heads=self.heads, topk=self.topk, layers=layers,
                            context_weight=self.memory_context_weight,
                            answer_context_weight=self.memory_answer_context_weight,
                            value_dtype=self.memory_value_dtype)

    def sparse_config(self) -> SparseConfig:
        schedule = StepSchedule(steps=self.steps, loss_threshold=self.loss_threshold, max_steps=self.max_steps)
        return SparseConfig(top_t=self.top_t, top_t_per_fact=self.top_t_per_fact, ranking=self.ranking,
                            optimizer=self.optimizer, lr=self.lr, max_row_norm=self.max_row_norm,  # type: ignore[arg-type]
                            trained_slot_weight=self.trained_slot_weight,
                            capped_slot_weight=self.capped_slot_weight, neighbour_reads=self.neighbour_reads,
                            answer_reads=self.answer_reads, keep_weight=self.keep_weight, schedule=schedule)


def unset_when_off(value: object) -> object:
    """An optional setting given as 'none', 'off' or nothing is unset (None)."""
    return None if isinstance(value, str) and value.strip().lower() in ("", "none", "off") else value
