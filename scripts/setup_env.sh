#!/usr/bin/env bash
# Build (or refresh) the project's virtual environment in .venv. Idempotent: safe to run again.
#
# Why this is a script and not just `pip install .`:
#  * torch must be the pinned CPU wheel (an unpinned torch pulls a multi-GB CUDA build);
#  * lava-nc 0.10.0 / lava-dl 0.6.0 declare Python <3.11 and pin old torch; they are installed from
#    their py3-none-any wheels with --no-deps, then patched so they import on Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${VENV:-.venv}
STAMP="$VENV/.neurocompile-setup"
# Re-run only when the inputs change.
want=$(cat scripts/setup_env.sh scripts/patch_lava.py pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP_CMD="$VENV/bin/python -m pip --disable-pip-version-check"
# pip's expected complaints are filtered: lava-dl pins versions that slayer/netx do not need
# (torch<2.4, pytest<8, pillow<11, torchvision), SpikingJelly lists torchvision/tqdm it does not
# import for neurons and layers, and some machines carry a pip configuration
# pointing at local wheel folders that may not exist.
PIP() {
  $PIP_CMD "$@" 2>&1 | { grep -v -E "^WARNING: Location|^lava-dl 0\.6\.0 requires|^spikingjelly 0\.0\.0\.0\.14 requires|dependency resolver does not currently take into account|^ERROR: pip's dependency resolver" || true; }
  return "${PIPESTATUS[0]}"
}
PIP install -q 'pip>=23' wheel
PIP install -q 'torch==2.13.0' 'numpy==1.26.*' 'ml_dtypes<0.6'
# lava-nc's own requirements (its metadata blocks Python 3.11, so they are listed here).
PIP install -q 'asteval>=0.9.31,<0.10' 'networkx<=2.8.7' 'scipy>=1.10,<2' 'scikit-learn>=1.5,<2' \
  'h5py>=3.7,<4' 'numpy==1.26.*' 'torch==2.13.0'
wheels="$VENV/lava-wheels"
mkdir -p "$wheels"
PIP download -q --no-deps --python-version 3.10 --only-binary=:all: \
  'lava-nc==0.10.0' 'lava-dl==0.6.0' -d "$wheels"
PIP install -q --no-deps --ignore-requires-python "$wheels"/lava_nc-0.10.0-py3-none-any.whl \
  "$wheels"/lava_dl-0.6.0-py3-none-any.whl
"$VENV/bin/python" scripts/patch_lava.py
# The frameworks models are imported from (optional for users, needed by the tests). SpikingJelly's
# metadata pulls torchvision (a second torch); its neuron and layer modules need neither.
PIP install -q 'snntorch==1.0.0' 'nirtorch>=2.6,<3'  # export_to_nir imports nirtorch
PIP install -q --no-deps 'spikingjelly==0.0.0.0.14'
# Ray for sharded runs on a cluster (the `ray` extra; the tests start a local 2-CPU cluster).
# 2.40.0 installs beside numpy 1.26 and the pinned torch on Python 3.11.
PIP install -q 'ray==2.40.0' 'numpy==1.26.*' 'torch==2.13.0'
PIP install -q -e '.[dev]' 'torch==2.13.0' 'numpy==1.26.*' 'ml_dtypes<0.6'
echo "$want" > "$STAMP"
