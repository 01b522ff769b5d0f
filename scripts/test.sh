#!/usr/bin/env bash
# The whole test suite from a clean checkout: Debian services, virtual environment, lint, pytest.
# Tests start their own Mosquitto / VictoriaMetrics / Prometheus / Alertmanager on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
bash scripts/setup.sh
.venv/bin/ruff check slewguard tests bench
# The suite runs in ~7 min here, so CI also runs the slow SmolLM2 GGUF -> fp32 conversion test.
export SLEWGUARD_TEST_GGUF="${SLEWGUARD_TEST_GGUF:-1}"
exec .venv/bin/python -m pytest -q "$@"
