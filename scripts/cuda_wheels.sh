#!/bin/bash
# Downloads into .cuda_wheels/ (ignored by git) the wheels that scripts/cuda_check.sh installs on a GPU machine that
# has Python 3.12 with CUDA PyTorch, NumPy, pandas, matplotlib, TensorBoard and pytest but no registry to install from:
# this package's other dependencies, pinned to the versions its tests pass with, without their own dependencies (so
# that no CUDA PyTorch of several GB comes along). Run it on a machine that reaches PyPI; about 8 MB.
# Usage: scripts/cuda_wheels.sh [PYTHON_VERSION (default 3.12)]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
abi=cp${version/./}
mkdir -p .cuda_wheels
python -m pip download --quiet --no-deps --only-binary=:all: --dest .cuda_wheels \
  --python-version "$version" --implementation cp --abi "$abi" \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  stable-baselines3==2.9.2 sb3-contrib==2.9.2 rl-zoo3==2.9.2 gymnasium==1.4.0 farama-notifications==0.0.6 \
  minatar==1.0.15 shimmy==2.0.1 sb3-team-hf-integration==3.2 python-dotenv==1.2.4 wasabi==1.1.3 \
  optuna==5.1.0 sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 colorlog==6.12.0 pytz==2026.6 \
  pytablewriter==1.2.1 typepy==1.3.5 mbstrdecoder==1.1.5 chardet==6.0.0.post1 tcolorpy==0.1.7 tabledata==1.3.5 \
  dataproperty==1.1.1 pathvalidate==3.3.1
ls .cuda_wheels
