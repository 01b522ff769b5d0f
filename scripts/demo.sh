#!/usr/bin/env bash
# The main job: set up .venv and run the slewguard demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/slewguard demo "$@"
