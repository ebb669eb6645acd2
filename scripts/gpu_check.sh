#!/usr/bin/env bash
# The CUDA path on a GPU machine: the model and worker tests with their models on the GPU
# (SMFT_TEST_DEVICE=cuda), then `smft bench speed --device cuda`.
#   scripts/gpu_check.sh [fast] [real] [speed] [speed-1m]   (none: the first three)
# fast: every tiny-model test file whose models follow SMFT_TEST_DEVICE (tests/conftest.py), the worker with a real
# redis-server among them; real: the default model's tests; speed: `smft bench speed --device cuda`; speed-1m: the
# same on a 1,048,576-row bfloat16 table (--n-keys 1024 --value-dtype bfloat16). PYTHON names the interpreter that
# has torch with CUDA (default .venv/bin/python); logs and the benchmark's JSON go to OUT (default runs/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=${OUT:-runs/gpu_check}
phases=" ${*:-fast real speed} "
mkdir -p "$out"
export SMFT_TEST_DEVICE=cuda PYTHONUNBUFFERED=1
status=0

if [[ $phases == *" fast "* ]]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
torch.cuda.get_device_name(0), 'transformers', transformers.__version__)"; } 2>&1 | tee "$out/env.txt"
  timeout 400 "$py" -m pytest -q -p no:cacheprovider -m "not integration and not slow" --durations=5 \
    tests/test_memory.py tests/test_learners.py tests/test_statistics.py tests/test_snapshot.py \
    tests/test_value_dtype.py tests/test_context.py tests/test_table_log.py tests/test_undo.py tests/test_locality.py \
    tests/test_teaching.py tests/test_provenance.py tests/test_neighbours.py tests/test_generation.py \
    tests/test_facts.py tests/test_corpus.py tests/test_ranking.py tests/test_bench_steps.py \
    tests/test_bench_addressing.py tests/test_batcher.py tests/test_worker.py \
    2>&1 | tee "$out/tests_fast.log" || status=1
fi
if [[ $phases == *" real "* ]]; then
  timeout 240 "$py" -m pytest -q -p no:cacheprovider --durations=5 tests/test_real_model.py \
    2>&1 | tee "$out/tests_real.log" || status=1
fi
if [[ $phases == *" speed "* ]]; then
  timeout 400 "$py" -m cli.main bench speed --device cuda --repeats 5 --out "$out/speed_cuda.json" \
    2>&1 | tee "$out/speed_cuda.log" || status=1
fi
if [[ $phases == *" speed-1m "* ]]; then
  timeout 400 "$py" -m cli.main bench speed --device cuda --repeats 5 --n-keys 1024 --value-dtype bfloat16 \
    --out "$out/speed_cuda_1m_bf16.json" 2>&1 | tee "$out/speed_cuda_1m_bf16.log" || status=1
fi
exit $status
