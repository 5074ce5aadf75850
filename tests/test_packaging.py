"""Packaging invariants: one version everywhere, every interface built, every command importable, package.xml's
dependencies what the code imports, and the core library free of ROS imports (the three-layer rule)."""
from __future__ import annotations

import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROS_MODULES = {"rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs", "visualization_msgs",
               "diagnostic_msgs", "std_srvs", "builtin_interfaces", "tf2_ros", "tf2_msgs", "message_filters",
               "cv_bridge", "sensor_msgs_py", "launch", "launch_ros", "g2vlm_ros", "rosidl_runtime_py"}


# Run dependencies that no module imports, and why package.xml still declares them.
RUN_DEPENDS_NOT_IMPORTED = {
    "rosidl_default_runtime": "the generated msg/srv load it at run time",
    "message_filters": "g2vlm_ros/sync.py pairs frames with its ApproximateTimeSynchronizer where it is installed",
}
# Executables installed into lib/g2vlm_ros: the extension-less files of scripts/.
EXECUTABLES = sorted(p for p in (REPO / "scripts").iterdir() if p.is_file() and not p.suffix)


def _imported(paths) -> set[str]:
    """Top-level names of the absolute imports in ``paths`` (function-level imports included)."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _package_xml_depends(*tags: str) -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for tag in tags for e in root.findall(tag)}


def test_package_xml_declares_exactly_the_ros_packages_the_code_imports():
    shipped = [*(REPO / "g2vlm_ros").rglob("*.py"), *(REPO / "launch").glob("*.py"), *EXECUTABLES]
    imported = (_imported(shipped) & ROS_MODULES) - {"g2vlm_ros"}
    run = {d for d in _package_xml_depends("depend", "exec_depend") if not d.startswith("python3-")}
    assert imported <= run, f"imported but not in package.xml: {sorted(imported - run)}"
    assert run - imported <= set(RUN_DEPENDS_NOT_IMPORTED), \
        f"in package.xml but never imported: {sorted(run - imported - set(RUN_DEPENDS_NOT_IMPORTED))}"
    tested = (_imported((REPO / "tests").rglob("*.py")) & ROS_MODULES) - {"g2vlm_ros"}
    declared = run | _package_xml_depends("test_depend")
    assert tested <= declared, f"the tests import {sorted(tested - declared)}, not in package.xml"
    python = {d for d in _package_xml_depends("depend", "exec_depend") if d.startswith("python3-")}
    modules = {"python3-numpy": "numpy", "python3-scipy": "scipy", "python3-yaml": "yaml", "python3-opencv": "cv2"}
    assert python <= set(modules), f"add the module of {sorted(python - set(modules))} here"
    assert {modules[d] for d in python} <= _imported([*shipped, *(REPO / "g2vlm_core").rglob("*.py")])


def test_cmake_installs_every_executable():
    cmake = (REPO / "CMakeLists.txt").read_text()
    installed = set(re.findall(r"scripts/(\w+)", re.search(r"install\(PROGRAMS([^)]*)\)", cmake).group(1)))
    assert EXECUTABLES and installed == {p.name for p in EXECUTABLES}


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
