"""Attach product-key memories beside the MLP of chosen decoder layers of a Hugging Face LM."""

from __future__ import annotations

import torch
from torch import nn

from model.config import MemoryConfig
from model.memory import ProductKeyMemory


class MemoryAugmentedMLP(nn.Module):
    """The original MLP kept as `base_layer`, plus a memory read as a parallel residual branch."""

    def __init__(self, base_layer: nn.Module, memory: ProductKeyMemory) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.memory = memory

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.base_layer(hidden_states) + self.memory(hidden_states)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM (Llama, Mistral, Qwen and most HF decoders)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"cannot find decoder layers (model.model.layers) in {type(model).__name__}")
    return layers


def attach_memories(model: nn.Module, config: MemoryConfig) -> dict[int, ProductKeyMemory]:
    """Wrap the MLP of each configured layer; returns the new memories by layer index.

    Base weights are frozen here: only the learners decide what trains.
    """
    layers = decoder_layers(model)
    hidden = model.config.hidden_size
    vocab = model.get_input_embeddings().weight.shape[0]
    param = next(model.parameters())
    memories: dict[int, ProductKeyMemory] = {}
    for offset, idx in enumerate(config.resolved_layers(len(layers))):
        layer = layers[idx]
        if isinstance(layer.mlp, MemoryAugmentedMLP):
            raise ValueError(f"layer {idx} already has a memory")
        # Each layer gets its own keys: vary the seed per layer.
        layer_cfg = MemoryConfig(**{**config.__dict__, "seed": config.seed + offset})
        memory = ProductKeyMemory(layer_cfg, hidden, vocab).place(param.device, param.dtype)
        layer.mlp = MemoryAugmentedMLP(layer.mlp, memory)
        memories[idx] = memory
    model.requires_grad_(False)
    return memories
