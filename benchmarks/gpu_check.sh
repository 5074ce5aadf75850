#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): on a one-GPU machine, from anywhere, in under 8 minutes.
#   bash benchmarks/gpu_check.sh            # PY=/path/to/python to use another interpreter than .venv's
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-73} HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
timeout 470 "$PY" benchmarks/gpu_check.py --device cuda "$@"
