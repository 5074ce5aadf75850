"""Running nodes: the shared main() of the node executables, and a node in a child process (demo, benchmarks, tests)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from g2vlm_ros.params import ParameterError

REPO = Path(__file__).resolve().parents[1]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT and SIGTERM of a node process: the first ends spinning; none that follows interrupts shutdown.

    The first is recorded, not raised, and from then on both are ignored (SIG_IGN: Python's own finalization keeps
    that, where it would put a default handler back). Python's default SIGINT handler raises KeyboardInterrupt
    wherever the main thread is, and a node under `ros2 launch` gets several: a terminal's Ctrl-C goes to the whole
    process group (launch and the node), an impatient user presses it twice, and launch sends SIGTERM to a node still
    busy after sigterm_timeout; one landed inside shutdown, at the worker join, and the map was never saved. rclpy's own handlers are left out (rclpy.init with SignalHandlerOptions.NO) because they
    shut the context down at the first signal, and then the node could no longer log to /rosout or publish while it
    saves; instead the signal's byte on Python's wakeup fd wakes the executor, whose wait holds the main thread in C
    where no Python handler runs. SIGKILL (launch's last resort) still ends the process."""

    def __init__(self) -> None:
        self.received: str | None = None
        for s in STOP_SIGNALS:
            signal.signal(s, self._record)

    def _record(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)

    def spin(self, executor) -> None:
        """Spin ``executor`` until the first SIGINT / SIGTERM (or until something shuts its context down)."""
        read, write = socket.socketpair()
        write.setblocking(False)
        signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)

        def wake_on_signal() -> None:
            while read.recv(64):
                executor.wake()
        waker = threading.Thread(target=wake_on_signal, name="g2vlm_signals")
        waker.start()
        try:
            while not self.received and executor.context.ok():
                executor.spin_once(timeout_sec=1.0)  # the timeout only bounds a wake that would go missing
        finally:
            # a thread left blocked here at exit made Open3D report its live allocations and the process exit 1
            signal.set_wakeup_fd(-1)
            write.close()
            waker.join()
            read.close()


def spin_node(make_node: Callable, num_threads: int, args=None, make_executor: Callable | None = None) -> int:
    """rclpy.init, build the node, spin it (``make_executor(node)``, else one thread: SingleThreadedExecutor, else a
    MultiThreadedExecutor of ``num_threads``) until SIGINT or SIGTERM, then call its ``shutdown()`` (if it has one)
    and clean up; returns the process exit status. SIGTERM (systemd, docker stop, launch) ends the node like Ctrl-C, and the signals that follow
    are ignored (StopSignals), so shutdown work such as saving the map always completes (only SIGKILL ends it).
    A parameter the node refuses is logged as one error line, exit status 2, no traceback."""
    signals = StopSignals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    status = 0
    try:
        node = make_node()
        executor = (make_executor(node) if make_executor is not None else
                    SingleThreadedExecutor() if num_threads <= 1 else MultiThreadedExecutor(num_threads=num_threads))
        executor.add_node(node)
        signals.spin(executor)
    except ExternalShutdownException:
        pass
    except (ParameterError, ParameterException) as e:
        rclpy.logging.get_logger(getattr(make_node, "__name__", "node")).error(str(e))
        status = 2
    finally:
        if node is not None:
            if signals.received:
                node.get_logger().info(f"{signals.received}: shutting down (further SIGINT and SIGTERM are "
                                       "ignored)")
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return status


def child_env() -> dict:
    """This process's environment (DDS domain, discovery range, DDS profile) with the source tree on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def perception_node_process(params: dict | None = None, params_file: bool = True,
                            capture: bool = True) -> "NodeProcess":
    """The perception node in a child process: the shipped parameters file (config/perception.yaml) unless
    ``params_file`` is False, then ``params`` (name -> value; booleans as ROS's true / false), which win over it.
    The one way the demo, smoke run, query evaluation and benchmarks start it."""
    args = ["--params-file", str(REPO / "config" / "perception.yaml")] if params_file else []
    for name, value in (params or {}).items():
        args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return NodeProcess("g2vlm_ros.perception_node", args, capture=capture)


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
