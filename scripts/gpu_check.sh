#!/bin/bash
# The SAE's GPU checks in one call, for a machine with CUDA and PyTorch but not this project's
# .venv (e.g. a lent GPU machine): the gpu-marked tests, then benchmarks/sae_train.py on CUDA at
# the paper's width (setting b), fp32 and bf16, with and without the CUDA-graph step; then
# benchmarks/sae_profile.py (device and host time per step).
#
#   .venv/bin/python benchmarks/sae_train.py --settings a --steps 1 --save-embeddings .gpu/astro_minilm.npy
#   scripts/gpu_check.sh .gpu/astro_minilm.npy OUT_DIR      # on the GPU machine
set -u
embeddings=${1:?usage: scripts/gpu_check.sh EMBEDDINGS.npy OUT_DIR}
out=${2:?usage: scripts/gpu_check.sh EMBEDDINGS.npy OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=$PWD/libs/core/src HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib" -m gpu \
  libs/core/tests/test_sae_model.py libs/core/tests/test_sae_train.py > "$out/pytest.txt" 2>&1
tail -3 "$out/pytest.txt"
python3 benchmarks/sae_train.py --device cuda --settings b --steps 40 --bf16 --throughput-steps 1000 \
  --embeddings "$embeddings" > "$out/bench.json" 2> "$out/bench.log"
echo "benchmark exit $?"
cat "$out/bench.json"
python3 benchmarks/sae_profile.py --device cuda --embeddings "$embeddings" > "$out/profile.json" 2> "$out/profile.txt"
cat "$out/profile.json"
