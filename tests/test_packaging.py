"""Packaging invariants: one version everywhere, every interface built, every command importable, and the core
library free of ROS imports (the three-layer rule)."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROS_MODULES = {"rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs", "visualization_msgs",
               "diagnostic_msgs", "std_srvs", "builtin_interfaces", "tf2_ros", "tf2_msgs", "message_filters",
               "cv_bridge", "sensor_msgs_py", "launch", "launch_ros", "g2vlm_ros", "rosidl_runtime_py"}


def _package_xml_version() -> str:
    return re.search(r"<version>([^<]+)</version>", (REPO / "package.xml").read_text()).group(1)


def test_one_version_everywhere():
    import g2vlm_core
    import g2vlm_ros

    v = _package_xml_version()
    assert g2vlm_core.__version__ == v and g2vlm_ros.__version__ == v
    setup_src = (REPO / "setup.py").read_text()
    assert "package.xml" in setup_src and "version=VERSION" in setup_src  # setup.py reads package.xml


def test_cmake_generates_every_interface_file():
    cmake = (REPO / "CMakeLists.txt").read_text()
    files = sorted(str(p.relative_to(REPO)) for p in [*REPO.glob("msg/*.msg"), *REPO.glob("srv/*.srv")])
    assert files and all(f'"{f}"' in cmake for f in files)


def test_every_console_script_has_a_main():
    scripts = re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', (REPO / "setup.py").read_text())
    assert len(scripts) >= 6
    for name, module, func in scripts:
        assert callable(getattr(importlib.import_module(module), func)), name


@pytest.mark.parametrize("path", sorted((REPO / "g2vlm_core").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_core_never_imports_ros(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            assert n.split(".")[0] not in ROS_MODULES, f"{path.relative_to(REPO)} imports {n}"
