#!/usr/bin/env bash
# Does an export load, through both loaders, and give the same probabilities in plain
# tensorflow-cpu 2.12 (Vertex AI's newest prebuilt TF serving image) as in the TF we build with?
#   bench/check_tf212.sh EXPORT IMAGE_DIR        (IMAGE_DIR: class folders of JPEGs)
# Makes .venv-tf212 (tensorflow-cpu 2.12.1 only: no onnx-tf, torch or addons) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
export_dir=$1 images=$2
venv=${TF212_VENV:-.venv-tf212}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "tensorflow-cpu==2.12.1" "numpy<2"
fi
tmp=$(mktemp -d)
mapfile -t files < <(find "$images" -name '*.jpg' | sort | head -n 64)
.venv/bin/python -m convert.verify --model-dir "$export_dir" --out "$tmp/ours.npz" "${files[@]}"
"$venv/bin/python" -m convert.verify --model-dir "$export_dir" --out "$tmp/tf212.npz" "${files[@]}"
.venv/bin/python - "$tmp" "$("$venv/bin/python" -c 'import tensorflow as t; print(t.__version__)')" <<'PY'
import sys, numpy as np, tensorflow as tf
a, b = np.load(f"{sys.argv[1]}/ours.npz"), np.load(f"{sys.argv[1]}/tf212.npz")
worst = 0.0
for loader in ("graph", "tf2"):
    d = float(np.abs(a[f"{loader}_probabilities"] - b[f"{loader}_probabilities"]).max())
    same = bool((a[f"{loader}_classes"] == b[f"{loader}_classes"]).all())
    worst = max(worst, d)
    print(f"{loader:5s} loader: TF {tf.__version__} vs TF {sys.argv[2]}: max |dprob| {d:.2e}, same classes {same}, "
          f"load {float(b[f'{loader}_load_seconds']):.2f}s in {sys.argv[2]}")
sys.exit(0 if worst <= 1e-5 else 1)
PY
