"""launch/perception.launch.py: statically, and for real through launch's API (tests/ros/test_ros2_launch.py runs the
`ros2 launch` command); plus the node's declared parameters and real topics, which the static checks compare against."""
from __future__ import annotations

import ast
import importlib.util
import re
import threading
from pathlib import Path

import pytest
import rclpy
import yaml

from g2vlm_ros.perception_node import INPUT_TOPICS, OUTPUT_TOPICS, PARAMS, SERVICES, PerceptionNode

from .conftest import activated_env, child_env, require_ros2_tool

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch" / "perception.launch.py"
# Parameters every rclpy node has without declaring them.
BUILTIN_PARAMS = {"use_sim_time"}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


@pytest.fixture(scope="module")
def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


@pytest.fixture(scope="module")
def node_in_process():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = PerceptionNode(context=ctx)
    yield node
    node.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def test_launch_file_defines_generate_launch_description(launch_tree):
    fns = [n.name for n in launch_tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in fns
    imported = {a.name for n in ast.walk(launch_tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"LaunchDescription", "DeclareLaunchArgument", "LaunchConfiguration", "Node"} <= imported


def test_node_action_names_an_installed_executable(launch_tree):
    (node,) = _calls(launch_tree, "Node")
    assert ast.literal_eval(_kw(node, "package")) == "g2vlm_ros"
    exe = ast.literal_eval(_kw(node, "executable"))
    assert (REPO / "scripts" / exe).is_file()
    assert re.search(rf"install\(PROGRAMS[^)]*scripts/{exe}\b", (REPO / "CMakeLists.txt").read_text())


def test_every_launch_configuration_is_declared(launch_tree):
    declared = {ast.literal_eval(c.args[0]) for c in _calls(launch_tree, "DeclareLaunchArgument")}
    used = {ast.literal_eval(c.args[0]) for c in _calls(launch_tree, "LaunchConfiguration")}
    assert used <= declared, f"undeclared launch arguments: {used - declared}"
    assert {"params_file", "namespace", "device"} <= declared


def test_every_parameter_the_launch_file_passes_is_declared_by_the_node(launch_tree):
    (node,) = _calls(launch_tree, "Node")
    passed = set()
    for d in ast.walk(_kw(node, "parameters")):
        if isinstance(d, ast.Dict):
            passed |= {ast.literal_eval(k) for k in d.keys}
    assert passed, "the launch file passes no parameter overrides"
    assert passed <= {p.name for p in PARAMS} | BUILTIN_PARAMS, passed - {p.name for p in PARAMS}
    # launch-argument choices match the node's own choices
    choices = {ast.literal_eval(c.args[0]): ast.literal_eval(_kw(c, "choices"))
               for c in _calls(launch_tree, "DeclareLaunchArgument") if _kw(c, "choices") is not None}
    specs = {p.name: p for p in PARAMS}
    for name, values in choices.items():
        assert set(values) == set(specs[name].choices), name


def test_every_remap_names_a_topic_the_node_really_uses(launch_tree, node_in_process):
    (node,) = _calls(launch_tree, "Node")
    remapped = {ast.literal_eval(t.elts[0]) for t in _kw(node, "remappings").elts}
    subscribed = {s.topic_name.lstrip("/") for s in node_in_process.subscriptions}
    assert remapped, "no remaps"
    assert remapped <= subscribed, f"remaps of topics the node does not subscribe: {remapped - subscribed}"
    assert set(INPUT_TOPICS) == subscribed  # the documented list is the real one (default pose_source: topic)
    published = {p.topic_name.lstrip("/") for p in node_in_process.publishers}
    assert {t.lstrip("/") for t in OUTPUT_TOPICS} <= published
    services = {s.srv_name.lstrip("/") for s in node_in_process.services}
    assert set(SERVICES) <= services


def test_params_file_matches_the_declared_parameters(node_in_process):
    cfg = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())
    (params,) = [v["ros__parameters"] for v in cfg.values()]
    declared = {p.name: p for p in PARAMS}
    assert set(params) == set(declared)
    for name, value in params.items():
        assert node_in_process.get_parameter(name).value == value  # the YAML holds the real defaults
        assert node_in_process.describe_parameters([name])[0].description


@pytest.mark.parametrize("arg,match", [("device:=tpu", "device='tpu' is invalid"), ("voxel_size_m:=5.0", "voxel_size_m")])
def test_invalid_parameter_values_are_rejected_with_a_reason(arg, match):
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", arg])
    try:
        with pytest.raises(Exception, match=match):
            PerceptionNode(context=ctx)
    finally:
        rclpy.shutdown(context=ctx)


def test_a_recognizer_without_its_model_is_refused_as_a_parameter():
    """A parameter error, which the node's process logs as one line and exit status 2 (spin_node), not a traceback."""
    from g2vlm_ros.params import ParameterError

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", "recognizer:=g2vlm", "-p", "model_checkpoint:=none"])
    try:
        with pytest.raises(ParameterError, match="needs a model checkpoint"):
            PerceptionNode(context=ctx)
    finally:
        rclpy.shutdown(context=ctx)


def test_launch_file_runs_for_real(monkeypatch):
    """The launch file through launch's own API, in this process, with its default params_file (found in the installed
    share folder): the node comes up, and launch's shutdown (SIGINT to it) ends it with exit status 0."""
    require_ros2_tool("launch_ros")
    import launch
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit, OnProcessIO
    from launch.events import Shutdown

    for k, v in {**activated_env(), "PYTHONPATH": child_env()["PYTHONPATH"]}.items():
        monkeypatch.setenv(k, v)  # the user's environment: AMENT_PREFIX_PATH from the venv's activate hook
    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    up, exits = [], []

    def on_output(event):
        if b"listening on" in event.text and not up:
            up.append(True)
            return EmitEvent(event=Shutdown(reason="the node is up"))
    ld.add_action(RegisterEventHandler(OnProcessIO(on_stdout=on_output, on_stderr=on_output)))
    ld.add_action(RegisterEventHandler(OnProcessExit(on_exit=lambda event, context: exits.append(event.returncode))))
    ls = launch.LaunchService(argv=["device:=cpu"])
    ls.include_launch_description(ld)
    timer = threading.Timer(300.0, ls.shutdown)  # start-up loads torch, Open3D and the model: slow on a busy machine
    timer.start()
    try:
        assert ls.run() == 0
    finally:
        timer.cancel()
    assert up, "the node never logged 'listening on' (stopped after 300 s)"
    assert exits == [0]
