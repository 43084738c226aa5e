#!/bin/bash
# The package's GPU checks in one command, for a GPU machine lent for minutes (docs/performance.md, "On a GPU"):
# 1. installs the wheels of scripts/cuda_wheels.sh where the dependencies are missing and .cuda_wheels/ is there (a
#    machine without a registry),
# 2. tests/test_cuda_path.py, whose CUDA tests run only where a GPU is,
# 3. scripts/throughput.py on the device: float32 and bfloat16 mixed precision, batch 16 and 50, eager; then
#    bfloat16 at batch 16 with compiled losses (first step = compile time); DreamerV3 (size1m, its batch of 16 x 64)
#    in bfloat16, eager and compiled,
# 4. a FRAMES-frame zoo run of the packaged DreamerV2 on Breakout-MinAtar (evaluations every 5k frames).
# Each step has a time limit, so that one that hangs leaves the others' results. Everything goes to OUT:
# cuda_check.log (all output), throughput.jsonl (one line per setting), evaluations.npz and zoo.log of the zoo run.
# Usage, from the repository root: scripts/cuda_check.sh OUT [DEVICE (default cuda)] [FRAMES (default 20000)]
# (the environment variables PYTHON and CUDA_WHEELS change the interpreter, python3, and the wheels' folder)
set -uo pipefail
out=$(realpath "${1:?usage: scripts/cuda_check.sh OUT [DEVICE] [FRAMES]}")
device=${2:-cuda}
frames=${3:-20000}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
wheels=${CUDA_WHEELS:-.cuda_wheels}
timing=(--grad-steps 20 --act-steps 300 --learn-frames 500)
{
  date -u
  if [ -d "$wheels" ] && ! "$python" -c "import stable_baselines3, sb3_contrib, rl_zoo3, minatar, optuna" 2>/dev/null; then
    "$python" -m pip install --quiet --no-index --no-deps "$wheels"/*.whl || echo "wheels not installed"
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  timeout 180 "$python" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda_path.py
  for batch in 16 50; do
    for precision in false true; do
      echo "throughput: batch $batch, mixed precision $precision"
      timeout 150 "$python" scripts/throughput.py --device "$device" --batch-size "$batch" --mixed-precision "$precision" \
        "${timing[@]}" | tee -a "$out/throughput.jsonl"
    done
  done
  echo "zoo: $frames frames"
  SECONDS=0
  timeout 360 "$python" -m sb3_dreamer.zoo train --algo dreamerv2 --env Breakout-MinAtar --seed 0 -n "$frames" \
    --eval-freq 5000 --eval-episodes 10 --n-eval-envs 1 --device "$device" -f "$out/zoo_run" > "$out/zoo.log" 2>&1
  echo "zoo exit $? after $SECONDS s"
  find "$out/zoo_run" -name evaluations.npz -exec cp {} "$out/evaluations.npz" \;
  "$python" -c "import numpy as np; d = np.load('$out/evaluations.npz'); print(d['timesteps'], d['results'].mean(1))"
  rm -rf "$out/zoo_run"
  echo "throughput: batch 16, mixed precision true, compiled losses"
  timeout 300 "$python" scripts/throughput.py --device "$device" --batch-size 16 --mixed-precision true \
    --compile-losses "${timing[@]}" | tee -a "$out/throughput.jsonl"
  for compiled in "" --compile-losses; do
    echo "throughput: dreamerv3, mixed precision true ${compiled:-eager}"
    timeout 300 "$python" scripts/throughput.py --device "$device" --algo dreamerv3 --mixed-precision true $compiled \
      "${timing[@]}" | tee -a "$out/throughput.jsonl"
  done
  date -u
} 2>&1 | tee "$out/cuda_check.log"
