#!/usr/bin/env bash
# Does an export load, through both loaders, and give PyTorch's probabilities in plain
# tensorflow-cpu 2.14.1 (the other of Vertex AI's prebuilt TF serving images, 2.15 and 2.14) as in the TF we build with,
# with TensorFlow's oneDNN kernels and with Eigen's (each in its own process: TF_ENABLE_ONEDNN_OPTS=1 / 0)?
#   bench/check_tf214.sh CHECKPOINT EXPORT IMAGE_DIR     (CHECKPOINT: the run's model.pt)
# Makes .venv-tf214 (tensorflow-cpu 2.14.1 only: no onnx-tf, torch or addons) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
checkpoint=$1 export_dir=$2 images=$3
venv=${TF214_VENV:-.venv-tf214}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "tensorflow-cpu==2.14.1" "numpy<2"
fi
for python in .venv/bin/python "$venv/bin/python"; do
  echo "== SavedModel in TF $("$python" -c 'import tensorflow as t; print(t.__version__)' 2>/dev/null) ($python)"
  .venv/bin/python -m convert.parity_sweep --checkpoint "$checkpoint" --model-dir "$export_dir" --data-dir "$images" \
    --limit 64 --loaders graph tf2 --kernels onednn eigen --serving-python "$python" --tol 1e-5 | head -n -1
done
