"""A causal LM with product-key memories attached: the object every other part works on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from model.config import MemoryConfig
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
        records: dict[int, list[torch.Tensor]] = {}
        for idx, memory in self.memories.items():
            records[idx] = memory.recorded_slots = []
        try:
            yield records
        finally:
            for memory in self.memories.values():
                memory.recorded_slots = None

    @torch.no_grad()
    def run_to_memories(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
        """Forward only as far as the last memory layer: enough to record reads or memory inputs."""
        last = decoder_layers(self.model)[max(self.memories)]

        def halt(module, args, output):
            raise _Halt

        handle = last.register_forward_hook(halt)
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _Halt:
            pass
        finally:
            handle.remove()

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
