#!/usr/bin/env bash
# GPU check, under 5 minutes on a machine with NVIDIA GPUs and no internet:
# a short CPU run, a single-GPU run, then torchrun over every GPU present, with images/s.
#   bench/gpu_check.sh [DATA_DIR/train]
# Needs the project's .venv (torch 2.14.1 is a CUDA build) or any Python with requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/mug-data/train}
py=${PYTHON:-.venv/bin/python}
nvidia-smi -L
ngpu=$(nvidia-smi -L | wc -l)
configs=(cpu:1 cuda:1)
[ "$ngpu" -gt 1 ] && configs+=("cuda:$ngpu")
timeout 290 "$py" -m bench.train_throughput --data-dir "$data" --epochs 3 --configs "${configs[@]}"
