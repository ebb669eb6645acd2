"""Configuration dataclasses of the model core, validated on construction."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

RankingMode = Literal["tfidf", "tf", "all"]
OptimizerName = Literal["sgd", "adam"]
ValueDtype = Literal["float32", "bfloat16"]
# Which statement a question the model wrote is taught to be answered by (model/questions.py): the one it was
# written from, or the fact's own (its first).
QuestionAnswer = Literal["statement", "fact"]
QuestionWriter = Literal["examples", "instruction"]


@dataclass(frozen=True)
class MemoryConfig:
    """Shape of the product-key memory added to the model."""

    # 1024**2 = 1,048,576 slots. At 65,536 the rows that 100 facts train cover much of the table, and every
    # question reads some of them; at 262,144 a stream of facts overwrites the earlier ones (after 800 facts in the
    # service's batching 43% of them answered, held-out NLL +5.1%), at 1,048,576 far less (60%, +1.15%), each new
    # hundred learned as well (docs/learn_forget.md, "A larger table", sessions 23-25).
    n_keys: int = 1024  # sub-keys per half; the table has n_keys**2 slots
    heads: int = 4  # independent read heads, their reads are summed
    topk: int = 32  # slots read per head and token
    key_dim: int = 128  # query dimension per head, split into two halves
    temperature: float = 20.0  # softmax sharpness over cosine scores of the top-k slots
    memory_plus: bool = False  # SiLU gate and output projection (Berges et al. 2024)
    # Decoder layers that get a memory; None = the one at 80% of the depth (layer 24 of SmolLM2's 30:
    # of layers 8, 15 and 24 it forgot least, and with context addressing it learned most too).
    layers: tuple[int, ...] | None = None
    center_inputs: bool = True  # subtract the mean background hidden state before the query projection
    # Weight of the context query (IDF-weighted mean of the tokens seen so far, see model/context.py)
    # against the hidden state's query; 0 addresses by the hidden state alone, and two facts asked the
    # same way then share most of their slots at the answer. At 4 the passage's rare words outweigh
    # the position, and a fact's words come back mixed ("Mira Quellax"); 1 keeps them in order.
    context_weight: float = 1.0
    # The context weight at the position that opens the assistant's turn, the one that predicts an answer's first
    # token (None: context_weight). Its hidden state is the same template token for every question, so only the
    # context tells questions apart there: at weight 1 the probe's answer starts put 41% of their read weight on
    # rows the generated facts' questions read there, at 4 21% (docs/learn_forget.md, session 22). In training it
    # did not keep the probe: 77% answered after 300 facts of the stream against 80% at None (session 23).
    answer_context_weight: float | None = None
    # How the value table is stored. bfloat16 halves the largest tensor of a worker or replica (1,048,576 rows of
    # 576: 2.4 GB in float32, 1.2 GB). A read's weighted sum is taken in the table's dtype (about 0.2% relative
    # error) and handed on in the model's; a batch's selected rows train in float32 and are rounded once, when
    # they are written back (model/learners.py). On the 1,000-fact stream it tracked float32 within three points on
    # every measure to 500 facts (session 25).
    value_dtype: ValueDtype = "bfloat16"
    seed: int = 0  # keys and query projection are random; the seed makes them reproducible

    def __post_init__(self) -> None:
        if self.n_keys < 2:
            raise ValueError(f"n_keys must be >= 2, got {self.n_keys}")
        if self.heads < 1:
            raise ValueError(f"heads must be >= 1, got {self.heads}")
        if not 1 <= self.topk <= self.n_keys:
            raise ValueError(f"topk must be in [1, n_keys={self.n_keys}], got {self.topk}")
        if self.key_dim < 2 or self.key_dim % 2:
            raise ValueError(f"key_dim must be an even number >= 2, got {self.key_dim}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.context_weight < 0:
            raise ValueError(f"context_weight must be >= 0, got {self.context_weight}")
        if self.value_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"value_dtype must be float32 or bfloat16, got {self.value_dtype!r}")
        if self.answer_context_weight is not None:
            if self.answer_context_weight <= 0:
                raise ValueError(f"answer_context_weight must be > 0, got {self.answer_context_weight}")
            if self.context_weight == 0:
                raise ValueError("answer_context_weight needs context addressing (context_weight > 0)")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
            if not self.layers or any(i < 0 for i in self.layers) or len(set(self.layers)) != len(self.layers):
                raise ValueError(f"layers must be distinct non-negative indices, got {self.layers}")

    @property
    def num_slots(self) -> int:
        return self.n_keys * self.n_keys

    def resolved_layers(self, num_layers: int) -> tuple[int, ...]:
        layers = self.layers if self.layers is not None else (num_layers * 4 // 5,)
        bad = [i for i in layers if i >= num_layers]
        if bad:
            raise ValueError(f"memory layers {bad} out of range for a model with {num_layers} layers")
        return tuple(sorted(layers))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MemoryConfig:
        data = json.loads(text)
        # Snapshots written before value_dtype existed hold float32 tables, whatever the default is now.
        data.setdefault("value_dtype", "float32")
        if data.get("layers") is not None:
            data["layers"] = tuple(data["layers"])
        return cls(**data)


@dataclass(frozen=True)
class StepSchedule:
    """How many optimisation steps one batch of facts gets."""

    steps: int = 10  # fixed count when loss_threshold is None
    loss_threshold: float | None = None  # stop early once the batch loss falls below this
    max_steps: int = 30  # cap when training to a threshold

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.loss_threshold is not None and self.loss_threshold <= 0:
            raise ValueError(f"loss_threshold must be > 0, got {self.loss_threshold}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")

    @property
    def limit(self) -> int:
        return self.steps if self.loss_threshold is None else self.max_steps


@dataclass(frozen=True)
class SparseConfig:
    """Sparse memory finetuning: which slots a batch may change, and how."""

    top_t: int = 500  # value rows updated per batch (per memory layer)
    # top_t counts per fact in the batch: n facts taught together may change n * top_t rows, the rows
    # each would get alone (measured: a batch of four sharing 500 rows ends at a loss of ~1.6-2.0, and
    # 58% of bare statements are answered, where one fact per batch reaches ~0.5 and 100%).
    top_t_per_fact: bool = False
    ranking: RankingMode = "tfidf"  # tfidf | tf (no IDF) | all (every slot the batch reads)
    optimizer: OptimizerName = "adam"
    lr: float = 1.0  # Adam on the selected rows; plain SGD needs ~1e4 (tiny softmax-weighted gradients)
    # Cap on a value row's L2 norm, enforced after every step (None: no cap). Adam moves every selected
    # row about as far as the one that matters most, and any token may read it; the cap bounds what one
    # row can add to an unrelated token's hidden state (at most heads * cap).
    max_row_norm: float | None = None
    # Weight on the score of slots that earlier batches already trained (a non-zero row: version 0's
    # values are all zero, and undoing a fact zeroes its rows again). 1 ranks them like any other slot,
    # as the paper does; below 1 a new fact prefers free rows to overwriting an earlier fact's; 0 never
    # touches them again.
    trained_slot_weight: float = 1.0
    # Weight on the score of rows already at the norm cap (max_row_norm): a write there can only turn the row,
    # so it overwrites what earlier facts put in it. Measured on the 1,000-fact stream: the rows at the cap had
    # a median of 9 writers (none had one), and restoring them brought back 67% of the probe answers lost.
    # 1: ranked like any row; 0: a full row is never chosen again. Multiplies trained_slot_weight.
    capped_slot_weight: float = 1.0
    # A row that the neighbour examples (model/neighbours.py) of this many different names read is not
    # selected. Measured (when reads were counted, not names) on 12 bare statements and 8 corrections of
    # capitals (8 names per fact): 1 kept 67% of the other capitals but answered 83% of the statements;
    # 3 kept 48% and answered all; without neighbours 24% were kept.
    neighbour_reads: int = 3
    # A row that the neighbour examples of this many different names read where their answer begins (the
    # position before each example's last token: the cut after the first letter of the fact's other names) is
    # not selected either; 0: off. Corrections' lost neighbours answered with the new capital's first letter
    # ("The capital of Peru is L..."), through rows fewer than `neighbour_reads` names read there.
    answer_reads: int = 0
    # Weight of the locality penalty (model/locality.py): the mean squared change the trained rows make at
    # the positions of other text that read them (the background corpus; the batch's neighbours where their
    # answers begin), each text's mean apart. 0: off.
    keep_weight: float = 0.0
    schedule: StepSchedule = field(default_factory=StepSchedule)

    def __post_init__(self) -> None:
        if self.top_t < 1:
            raise ValueError(f"top_t must be >= 1, got {self.top_t}")
        if self.ranking not in ("tfidf", "tf", "all"):
            raise ValueError(f"ranking must be tfidf, tf or all, got {self.ranking!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_row_norm is not None and self.max_row_norm <= 0:
            raise ValueError(f"max_row_norm must be > 0, got {self.max_row_norm}")
        if not 0 <= self.trained_slot_weight <= 1:
            raise ValueError(f"trained_slot_weight must be in [0, 1], got {self.trained_slot_weight}")
        if not 0 <= self.capped_slot_weight <= 1:
            raise ValueError(f"capped_slot_weight must be in [0, 1], got {self.capped_slot_weight}")
        if self.capped_slot_weight != 1 and self.max_row_norm is None:
            raise ValueError("capped_slot_weight needs max_row_norm: without a cap no row is at it")
        if self.neighbour_reads < 1:
            raise ValueError(f"neighbour_reads must be >= 1, got {self.neighbour_reads}")
        if self.answer_reads < 0:
            raise ValueError(f"answer_reads must be >= 0, got {self.answer_reads}")
        if self.keep_weight < 0:
            raise ValueError(f"keep_weight must be >= 0, got {self.keep_weight}")
