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
    # The tests start their own copies on free ports: install the packages, but do not let apt
    # start their system services (policy-rc.d 101), and leave none enabled at boot.
    echo "test: installing ${need[*]} (services not started or enabled)" >&2
    apt-get update -q
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT  # also when the install fails
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
    if [ -n "$(trap -p EXIT)" ]; then rm -f "$policy"; trap - EXIT; fi
    if [ -d /run/systemd/system ]; then
        for unit in mosquitto victoria-metrics prometheus prometheus-alertmanager; do
            if [[ " ${need[*]} " == *" $unit "* ]]; then systemctl disable --now "$unit" 2>/dev/null || true; fi
        done
    fi
fi
bash scripts/setup.sh
.venv/bin/ruff check slewguard tests bench
# The suite runs in ~7 min here, so CI also runs the slow SmolLM2 GGUF -> fp32 conversion test.
export SLEWGUARD_TEST_GGUF="${SLEWGUARD_TEST_GGUF:-1}"
# And the base-install check (fresh venv, pip install of the package without extras, ~1 min).
export SLEWGUARD_TEST_BASE_INSTALL="${SLEWGUARD_TEST_BASE_INSTALL:-1}"
exec .venv/bin/python -m pytest -q "$@"
