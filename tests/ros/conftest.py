"""ROS test fixtures: loopback-only DDS in a domain of this test run, and a private rclpy context per test."""
from __future__ import annotations

import os
import time

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
