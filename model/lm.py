"""A causal LM with product-key memories attached: the object every other part works on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from model.config import MemoryConfig
from model.context import ContextPooler, assistant_turn_opener, user_turn_opener
from model.loading import DEFAULT_MODEL, load_base_model
from model.memory import ProductKeyMemory
from model.retrofit import attach_memories, decoder_layers


class _Halt(Exception):
    """Raised by a hook to end a forward pass early."""


class MemoryLM:
    def __init__(self, model: nn.Module, tokenizer, config: MemoryConfig, model_name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.model_name = model_name
        self.memories: dict[int, ProductKeyMemory] = attach_memories(model, config)
        self.context: ContextPooler | None = None
        if config.context_weight > 0:
            self.context = ContextPooler(model.model, list(self.memories.values()), user_turn_opener(tokenizer),
                                         assistant_turn_opener(tokenizer))

    @classmethod
    def load(cls, spec: str = DEFAULT_MODEL, config: MemoryConfig | None = None, device: str = "cpu") -> MemoryLM:
        model, tokenizer = load_base_model(spec, device)
        return cls(model, tokenizer, config or MemoryConfig(), spec)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    @contextmanager
    def recording(self) -> Iterator[dict[int, list[torch.Tensor]]]:
        """Collect the slots every memory reads while the block runs: {layer: [[B, T, heads, k], ...]}."""
        with self._collecting("recorded_slots") as records:
            yield records

    @contextmanager
    def reads(self) -> Iterator[dict[int, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Collect the slots every memory reads and their weights: {layer: [(slots, weights), ...]},
        each [B, T, heads, k] for one forward."""
        with self._collecting("recorded_reads") as records:
            yield records

    @contextmanager
    def without_memory(self, muted: Sequence[bool] | None) -> Iterator[None]:
        """While the block runs, the batch rows flagged in `muted` are answered as version 0 answers them: their
        memory reads add nothing (a table of zeros at version 0 is the base model). None: every row reads."""
        if muted is None or not any(muted):
            yield
            return
        flags = torch.tensor(list(muted), dtype=torch.bool, device=self.device)
        for memory in self.memories.values():
            memory.muted = flags
        try:
            yield
        finally:
            for memory in self.memories.values():
                memory.muted = None

    @contextmanager
    def _collecting(self, attribute: str) -> Iterator[dict]:
        """Give every memory a list in `attribute` that its forwards append to, and take them back after."""
        records: dict[int, list] = {}
        for idx, memory in self.memories.items():
            records[idx] = []
            setattr(memory, attribute, records[idx])
        try:
            yield records
        finally:
            for memory in self.memories.values():
                setattr(memory, attribute, None)

    @torch.no_grad()
    def run_to_memories(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """Forward only as far as the last memory layer: enough to record reads or memory inputs.

        Returns the hidden states entering the lowest memory layer's decoder block: everything
        above it can be recomputed from them (see `from_layer`).
        """
        layers = decoder_layers(self.model)
        captured: list[torch.Tensor] = []

        def grab(module, args, kwargs):
            captured.append(args[0] if args else kwargs["hidden_states"])

        def halt(module, args, output):
            raise _Halt

        handles = [layers[min(self.memories)].register_forward_pre_hook(grab, with_kwargs=True),
                   layers[max(self.memories)].register_forward_hook(halt)]
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _Halt:
            pass
        finally:
            for h in handles:
                h.remove()
        return captured[0]

    @contextmanager
    def from_layer(self, layer: int) -> Iterator[None]:
        """While open, the model runs decoder blocks `layer`.. only: pass their input as `inputs_embeds`.

        The blocks below are frozen in sparse training, so their output for a batch never changes;
        skipping them saves recomputing it at every step.
        """
        inner = self.model.model
        full = inner.layers
        inner.layers = nn.ModuleList(list(full)[layer:])
        try:
            yield
        finally:
            inner.layers = full

    def loss_from_layer(self, layer: int, hidden: torch.Tensor, attention_mask: torch.Tensor,
                        labels: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """The causal-LM loss computed from block `layer`'s input, with the output head applied only
        where a label is set: the head's vocabulary-wide logits are the largest activations there are.

        Equals the full forward's loss for decoders that pass `inputs_embeds` through unchanged and
        apply no logit transform; learners check that once before relying on it.
        """
        pinned = self.context.pinned(input_ids) if self.context is not None else nullcontext()
        with self.from_layer(layer), pinned:
            body = self.model.model(inputs_embeds=hidden, attention_mask=attention_mask, use_cache=False)
        targets = labels[:, 1:]  # [B, T - 1]: position i predicts token i + 1
        keep = targets != -100
        logits = self.model.get_output_embeddings()(body.last_hidden_state[:, :-1][keep])  # [labelled, vocab]
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep])

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
