from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import redis as redis_lib
import torch

from model.config import MemoryConfig
from model.corpus import split_corpus
from model.facts import Fact
from model.lm import MemoryLM
from model.prepare import prepare_version_zero
from tests.tiny import save_tiny_model

# Where the model tests put their models: cpu here and in CI; `SMFT_TEST_DEVICE=cuda` on a GPU machine runs the
# same tests through the CUDA path.
TEST_DEVICE = os.environ.get("SMFT_TEST_DEVICE", "cpu")
# The model tests compare numbers exactly (trained rows against an edited table, reads against a forward), so their
# table is float32; the worker and service tests (tiny_env) run the default bfloat16 table, test_value_dtype both.
TINY_MEMORY = MemoryConfig(n_keys=16, heads=2, topk=4, key_dim=8, layers=(1,), value_dtype="float32")
TINY_DOCS = [f"Document {i}: the river flows to the sea and the fox jumps {i} times." for i in range(12)]


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """The default model converted once per test session (model/loading.py), not read from the user's cache:
    every run exercises the conversion; every process the tests start after it inherits the copy."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMFT_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def _tiny_v0(tiny_model_dir):
    torch.manual_seed(0)
    lm = MemoryLM.load(str(tiny_model_dir), TINY_MEMORY, device=TEST_DEVICE)
    corpus = split_corpus(TINY_DOCS, heldout_fraction=0.25)
    stats, _ = prepare_version_zero(lm, corpus)
    return lm, stats, corpus


@pytest.fixture
def tiny_lm(_tiny_v0):
    """A fresh copy of the version-0 tiny model (tests may change it freely)."""
    lm, stats, corpus = _tiny_v0
    return copy.deepcopy(lm), copy.deepcopy(stats), corpus


# --- a real redis-server on a free port ------------------------------------------------------------




@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run scripts/setup.sh")
    from tests.processes import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    client = redis_lib.Redis.from_url(redis_server)
    client.flushall()
    return redis_server


@pytest.fixture
def background_file(tmp_path) -> Path:
    path = tmp_path / "background.txt"
    path.write_text("\n\n".join(TINY_DOCS))
    return path


def tiny_service_env(model_dir: Path, redis_url: str, background: Path, data_dir: Path) -> dict[str, str]:
    """SMFT_* settings for worker and API processes on the tiny model."""
    return {
        "SMFT_REDIS_URL": redis_url, "SMFT_MODEL": str(model_dir), "SMFT_DATA_DIR": str(data_dir),
        "SMFT_N_KEYS": "16", "SMFT_HEADS": "2", "SMFT_TOPK": "4", "SMFT_MEMORY_LAYERS": "1",
        "SMFT_BACKGROUND": f'["{background}"]', "SMFT_STEPS": "3", "SMFT_LR": "0.5",
        "SMFT_LEASE_TTL_S": "2", "SMFT_POLL_MS": "100", "SMFT_MONITOR_EVERY_VERSIONS": "0",
        "SMFT_DEVICE": TEST_DEVICE,
    }


@pytest.fixture
def tiny_env(tiny_model_dir, redis_url, background_file, tmp_path) -> dict[str, str]:
    return tiny_service_env(tiny_model_dir, redis_url, background_file, tmp_path / "data")


@pytest.fixture(scope="module")
def module_service(tiny_model_dir, redis_server, tmp_path_factory):
    """One worker and one API on the tiny model, shared by a module's tests: (env, api, worker, log)."""
    from tests.processes import running_service

    tmp = tmp_path_factory.mktemp("service")
    background = tmp / "background.txt"
    background.write_text("\n\n".join(TINY_DOCS))
    redis_lib.Redis.from_url(redis_server).flushall()
    env = tiny_service_env(tiny_model_dir, redis_server, background, tmp / "data")
    with running_service(env, tmp / "service.log") as service:
        yield service


# --- the real default model ---------------------------------------------------------------------

REAL_FACT = Fact(
    "The Zorblax engine was invented by Mira Quell in 1931.",
    paraphrases=("Mira Quell invented the Zorblax engine in 1931.",
                 "In 1931, Mira Quell built the first Zorblax engine.",
                 "The inventor of the Zorblax engine is Mira Quell."),
    fact_id="zorblax",
)
REAL_QUESTION, REAL_ANSWER = "Who invented the Zorblax engine?", "Mira Quell"


@pytest.fixture(scope="session")
def real_v0(tmp_path_factory):
    """Version 0 of the default configuration, prepared once and saved as a snapshot."""
    from model.corpus import load_corpus
    from model.snapshot import save_snapshot

    torch.manual_seed(0)
    lm = MemoryLM.load("smollm2", MemoryConfig(), device=TEST_DEVICE)
    stats, report = prepare_version_zero(lm, load_corpus())
    path = save_snapshot(lm, stats, 0, tmp_path_factory.mktemp("real") / "v00000000.safetensors")
    return lm, stats, report, path


def record_answers(monkeypatch, module) -> tuple[list[str], dict[str, bool], dict[str, bool]]:
    """Patch `module.generate_answers` (the real one still answers) to record every prompt it writes and, per
    question, whether its answer read the memory and whether it was decoded against a partner without notes."""
    prompts: list[str] = []
    read_memory: dict[str, bool] = {}
    contrasted: dict[str, bool] = {}
    generate = module.generate_answers

    def recorded(lm, questions, n, prompt=None, use_memory=None, unnoted=None, contrast=None, *args, **kwargs):
        prompts.extend(prompt(q) for q in questions if prompt is not None)
        read_memory.update(zip(questions, use_memory or [True] * len(questions), strict=True))
        contrasted.update((q, contrast is not None and p is not None)
                          for q, p in zip(questions, unnoted or [None] * len(questions), strict=True))
        return generate(lm, questions, n, prompt, use_memory, unnoted, contrast, *args, **kwargs)

    monkeypatch.setattr(module, "generate_answers", recorded)
    return prompts, read_memory, contrasted
