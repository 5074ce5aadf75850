"""ROS test fixtures: loopback-only DDS in a domain of this test run, a private rclpy context per test, and the
upstream ROS 2 tools (launch, ros2cli, sensor_msgs_py...) with the environment a user runs them in."""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Set before any rclpy.init: DDS discovery stays on loopback, in a domain no parallel run shares, images over
# shared memory (see g2vlm_ros/dds.py).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
from g2vlm_ros.dds import use_local_dds  # noqa: E402

use_local_dds()

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from g2vlm_ros.process import NodeProcess, child_env  # noqa: E402,F401  (re-exported for the tests)


REPO = Path(__file__).resolve().parents[2]
# Where scripts/setup.sh installs the upstream tools from (CI has it beside the clone; a user's clone may not).
UPSTREAM = Path(os.environ.get("G2VLM_ROS2_UPSTREAM", REPO.parent / "shared" / "ros2-upstream"))


def require_ros2_tool(module: str) -> None:
    """Skip a test that needs an upstream ROS 2 tool only where this checkout cannot have it: with
    ../shared/ros2-upstream beside it (CI) the setup installs the tools, so a missing one is a failure, not a skip."""
    if importlib.util.find_spec(module) is not None:
        return
    if UPSTREAM.is_dir():
        pytest.fail(f"{module} is not installed although {UPSTREAM} holds it: run `make setup`")
    pytest.skip(f"{module} needs a ROS 2 distro or the upstream tool wheels (README: 'ROS 2 command-line tools')")


@functools.cache
def activated_env() -> dict:
    """The variables `. <venv>/bin/activate` sets (its hook adds the venv to AMENT_PREFIX_PATH), as a user of the
    project venv has them; nothing outside a venv (a ROS distro's sourced environment is used as it is)."""
    activate = Path(sys.prefix) / "bin" / "activate"
    if sys.prefix == sys.base_prefix or not activate.is_file():
        return {}
    out = subprocess.run(["bash", "-c", f'. "{activate}" && env -0'], capture_output=True, check=True).stdout
    env = dict(line.split("=", 1) for line in out.decode().split("\0") if "=" in line)
    return {k: env[k] for k in ("PATH", "VIRTUAL_ENV", "AMENT_PREFIX_PATH") if k in env}


@pytest.fixture
def ros_env() -> dict:
    return child_env()


def user_environment() -> dict:
    """A child process's environment (this run's DDS settings, the source tree first on the path) in the activated
    project venv: what `ros2 launch` / `ros2 run` / `ros2 service call` see in a user's terminal."""
    return {**child_env(), **activated_env()}


@pytest.fixture
def user_env() -> dict:
    return user_environment()


@pytest.fixture
def ros_node():
    """(node, executor) in a private rclpy context, torn down after the test."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"test_client_{os.getpid()}", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    yield node, ex
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def spin_until(executor, predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def call(executor, client, request, timeout_s: float = 15.0):
    fut = client.call_async(request)
    executor.spin_until_future_complete(fut, timeout_sec=timeout_s)
    assert fut.done(), f"service {client.srv_name} did not answer within {timeout_s} s"
    return fut.result()
