"""ROS test fixtures: loopback-only DDS in a domain of this test run, and a private rclpy context per test."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Set before any rclpy.init: DDS discovery stays on loopback, in a domain no parallel run shares.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def child_env() -> dict:
    """Environment for child processes: same DDS domain, loopback only, the source tree on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def ros_env() -> dict:
    return child_env()


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


class NodeProcess:
    """A node in its own OS process; stopped with SIGINT (like Ctrl-C) and its output kept for messages."""

    def __init__(self, args: list[str], env: dict):
        self.proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=REPO)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 15.0) -> tuple[int, str]:
        if self.alive():
            self.proc.send_signal(subprocess.signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out
