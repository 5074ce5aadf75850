"""Running nodes: the shared main() of the node executables, and a node in a child process (demo, benchmarks, tests)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

REPO = Path(__file__).resolve().parents[1]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def spin_node(make_node: Callable, num_threads: int, args=None) -> None:
    """rclpy.init, build the node, spin it (one thread: SingleThreadedExecutor, else a MultiThreadedExecutor of
    ``num_threads``) until Ctrl-C or SIGTERM, then call its
    ``shutdown()`` (if it has one) and clean up. SIGTERM (systemd, docker stop, launch) ends the node like
    Ctrl-C, so shutdown work such as saving the map runs for both."""
    rclpy.init(args=args)
    signal.signal(signal.SIGTERM, _interrupt)
    node = None
    try:
        node = make_node()
        executor = (SingleThreadedExecutor() if num_threads <= 1 else MultiThreadedExecutor(num_threads=num_threads))
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def child_env() -> dict:
    """This process's environment (DDS domain, discovery range, DDS profile) with the source tree on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProcess:
    """``python -m <module> --ros-args ...`` in a child process; ``stop()`` sends SIGINT (like Ctrl-C).

    ``capture``: keep its output (returned by stop) instead of letting it through to this terminal."""

    def __init__(self, module: str, ros_args: list[str], env: dict | None = None, capture: bool = True):
        out = subprocess.PIPE if capture else None
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args],
                                     env=child_env() if env is None else env, stdout=out,
                                     stderr=subprocess.STDOUT if capture else None, text=True, cwd=REPO)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> tuple[int, str]:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out or ""
