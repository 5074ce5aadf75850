"""Perception node: rgb + depth + camera_info in; fused cloud, scene graph, markers, pose, diagnostics out;
SpatialQuery / reset / save_map / load_map services. All the work is g2vlm_core.pipeline.PerceptionPipeline.

    g2vlm-perception-node --ros-args --params-file config/perception.yaml
"""
from __future__ import annotations

import re
import resource
import sys
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from g2vlm_core.geometry.camera import UNDISTORT_MODELS, GeometryError, Undistorter
from g2vlm_core.geometry.fusion import FusionConfig
from g2vlm_core.frame import RGBDFrame
from g2vlm_core.recognition.factory import make_labeller
from g2vlm_core.recognition.g2vlm import resolve_checkpoint
from g2vlm_core.recognition.labeller import KeyframeLabeller
from g2vlm_core.pipeline import PerceptionPipeline, PipelineConfig, limit_blas_threads
from g2vlm_core.geometry.segmentation import Segmenter, SegmenterConfig
from g2vlm_core.language.embedding import TextEmbedder
from g2vlm_core.language.query import QueryConfig, QueryEngine

from g2vlm_ros import conversions as cv
from g2vlm_ros.markers import scene_graph_markers
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.params import ParameterError, ParamSpec, declare_and_read
from g2vlm_ros.process import spin_node
from g2vlm_ros.qos import LATCHED, RELIABLE, sensor_qos
from g2vlm_ros.query_service import QueryOffloadExecutor, QueryService
from g2vlm_ros.srv import LoadMap, SaveMap
from g2vlm_ros.sync import FrameSync, LatestSlot

# Topics the node uses (relative: a namespace or remap applies). The launch-file test checks remaps against these.
INPUT_TOPICS = ("color/image_raw", "depth/image_raw", "color/camera_info", "camera_pose_in")
OUTPUT_TOPICS = ("cloud", "scene_graph", "markers", "camera_pose", "processed", "/diagnostics")
SERVICES = ("spatial_query", "reset", "save_map", "load_map")

PARAMS = (
    ParamSpec("rgb_topic", "color/image_raw", "Colour image topic (rgb8, bgr8, rgba8, bgra8 or mono8)."),
    ParamSpec("depth_topic", "depth/image_raw", "Depth image topic registered to the colour image "
              "(16UC1 millimetres or 32FC1 metres)."),
    ParamSpec("camera_info_topic", "color/camera_info", "CameraInfo of the (registered) depth image."),
    ParamSpec("sensor_reliable", False, "Subscribe to the camera reliably (for drivers or bag players that "
              "only publish reliably); default best-effort sensor QoS."),
    ParamSpec("sync_slop_s", 0.02, "Largest rgb/depth stamp difference accepted as one frame (s).", 0.0, 1.0),
    ParamSpec("pose_source", "topic", "Camera pose: 'topic' (PoseStamped of the camera optical frame in the map "
              "frame, on pose_topic), 'tf' (map -> image frame, needs tf2_ros) or 'odometry' (frame-to-model "
              "tracking against the fused map, the fall-back when neither exists; frames it loses are skipped as "
              "'tracking_lost').",
              choices=("topic", "tf", "odometry")),
    ParamSpec("pose_topic", "camera_pose_in", "PoseStamped topic used when pose_source is 'topic'."),
    ParamSpec("pose_max_age_s", 0.1, "Largest stamp difference between a frame and the pose used for it (s).",
              0.0, 10.0),
    ParamSpec("pose_wait_s", 0.3, "How long a frame waits for its pose or camera_info to arrive (s): they travel "
              "on other topics and may come just after the images.", 0.0, 10.0),
    ParamSpec("map_frame", "map", "Frame the camera poses are given in (TF target frame, pose topic); the fused map "
              "and the scene graph are published in it when up_axis is '+z'."),
    ParamSpec("up_axis", "+z", "Up axis of map_frame. The scene graph, its boxes and relations ('on', 'above') assume "
              "z up, so with another axis the node rotates the poses into a z-up frame '<map_frame>_zup' (a fixed "
              "quarter or half turn, see g2vlm_core/geometry/gravity.py; published on /tf_static when tf2_ros is "
              "there) and publishes its outputs in it. The poses are checked against the floor the camera sees: a "
              "mismatch is warned once and shown in /diagnostics ('gravity_check').",
              choices=("+z", "-z", "+y", "-y", "+x", "-x")),
    ParamSpec("device", "auto", "Where fusion runs: 'auto' (CUDA when available), 'cpu' or 'cuda'.",
              choices=("auto", "cpu", "cuda")),
    ParamSpec("recognizer", "coco", "What names the objects on keyframes: 'coco' (SSD-MobileNet-v2 COCO + "
              "EfficientNet ImageNet, pretrained on real images, offline: the default for real cameras), 'hf' "
              "(open-vocabulary detector / CLIP from hf_detector / hf_embedder), 'g2vlm' (the G2VLM model's own "
              "instances: the synthetic world, the demo) or 'none' (class-agnostic geometry).",
              choices=("coco", "hf", "g2vlm", "none")),
    ParamSpec("model_checkpoint", "auto", "G2VLM model: the recognizer when recognizer is 'g2vlm', else the reasoner "
              "beside it (embeds the recognised objects and grounds queries with its grounding head): 'auto' (the "
              "shipped baseline when this build has one), 'baseline', 'none' or a folder path."),
    ParamSpec("hf_detector", "", "recognizer 'hf': zero-shot detector (OWLv2, OWL-ViT, Grounding DINO) as a local "
              "folder or a Hugging Face id already in the cache; '' = none."),
    ParamSpec("hf_embedder", "", "recognizer 'hf': CLIP / SigLIP model (local folder or cached id) that embeds objects "
              "and query text, and labels boxes over hf_labels; '' = none."),
    ParamSpec("hf_labels", "", "recognizer 'hf': comma-separated object names to detect; '' = the COCO names."),
    ParamSpec("hf_allow_download", False, "recognizer 'hf': let transformers download missing weights (off: only "
              "local folders and the cache are used)."),
    ParamSpec("voxel_size_m", 0.02, "TSDF voxel edge (m).", 0.005, 0.5),
    ParamSpec("depth_min_m", 0.1, "Nearer depths are ignored (m).", 0.0, 10.0),
    ParamSpec("depth_max_m", 5.0, "Farther depths are ignored (m).", 0.1, 100.0),
    ParamSpec("allocation_stride", 0, "TSDF blocks are allocated from every n-th depth pixel (0: automatic, 2 where "
              "two pixels at depth_max_m are under a voxel apart, else 1; 5-18 % less fusion time, the same map).",
              0, 8),
    ParamSpec("keyframe_every_n", 5, "A keyframe (segmentation + object update) at least every n frames.", 1, 1000),
    ParamSpec("async_keyframes", True, "Run keyframes (model, segmentation, object map) on their own thread so fusion "
              "keeps the frame rate; false runs them inline (deterministic, slower)."),
    ParamSpec("keyframe_min_novelty", 0.1, "async_keyframes: a keyframe candidate is skipped ('recognised') when less "
              "than this share of the surface it sees is new to the recognised keyframes (seen by fewer than two).",
              0.0, 1.0),
    ParamSpec("keyframe_pool", 4, "async_keyframes: candidates that wait while recognition is busy; when it overflows "
              "the one adding least is skipped ('less_novel').", 1, 100),
    ParamSpec("model_threads", 1, "CPU threads torch uses for keyframe recognition (0: torch's default, one per "
              "core). One by default: fusion's Open3D threads need the rest, and torch's spinning workers made the "
              "model 4-5x slower when they had to share a 2-core CPU (measured: 58 against 299 ms a keyframe).",
              0, 256),
    ParamSpec("blas_threads", 1, "Threads of numpy's BLAS in this process (0: the library's default, one per core). "
              "One by default: BLAS's idle threads spin at full priority after each call from keyframe work and "
              "took the CPU from fusion (Open3D's calls 22 against 12 ms a frame beside geometric keyframes on a "
              "2-core CPU); the node's matrices are small.", 0, 256),
    ParamSpec("keyframe_refresh_s", 5.0, "async_keyframes: with nothing new in view, still one keyframe this often "
              "(s of frame stamps), so a changing scene stays current.", 0.0, 3600.0),
    ParamSpec("cloud_period_s", 2.0, "Fused-cloud publication period (s); 0 disables it.", 0.0, 3600.0),
    ParamSpec("diagnostics_period_s", 1.0, "Diagnostics publication period (s).", 0.1, 60.0),
    ParamSpec("map_dir", "g2vlm_map", "Folder used by save_map / load_map when the request names none."),
    ParamSpec("save_on_shutdown", False, "Save the map to map_dir on SIGINT / SIGTERM."),
    ParamSpec("query_max_results", 5, "Results returned when a query asks for 0.", 1, 100),
    ParamSpec("max_stamp_ahead_s", 10.0, "Frames and poses stamped further ahead of this node's clock are skipped "
              "('stamp_future') and move no time state; 0 disables the check.", 0.0, 1.0e9),
    ParamSpec("clock_jump_s", 1.0, "A frame stamped this much before the last one means the source clock jumped back "
              "(a looping bag, a restarted driver): handled by on_clock_jump; smaller steps back are skipped as "
              "'stamp_backwards'.", 0.001, 1.0e6),
    ParamSpec("on_clock_jump", "new_recording", "On a clock jump back: 'new_recording' (forget the time state, keep "
              "the map and go on mapping) or 'reset' (also clear the map).", choices=("new_recording", "reset")),
    ParamSpec("map_paths_anywhere", False, "Let save_map / load_map use folders outside map_dir (by default a "
              "request's folder must resolve inside map_dir)."),
    ParamSpec("max_map_file_mb", 256, "load_map refuses a map whose files are larger than this (MB).", 1, 1_000_000),
    ParamSpec("max_image_pixels", 4_194_304, "Images with more pixels (width x height) are skipped as "
              "'image_too_large'.", 1, 1_000_000_000),
    ParamSpec("query_max_busy_share", 1.0, "Share of the time spatial queries may take (over the last second; they "
              "run one at a time on a thread of their own); beyond it a query is answered at once with success false "
              "and 'busy, retry'. 1: no limit.", 0.05, 1.0),
)


@dataclass(frozen=True)
class NodeConfig:
    rgb_topic: str
    depth_topic: str
    camera_info_topic: str
    sensor_reliable: bool
    sync_slop_s: float
    pose_source: str
    pose_topic: str
    pose_max_age_s: float
    pose_wait_s: float
    map_frame: str
    up_axis: str
    device: str
    recognizer: str
    model_checkpoint: str
    hf_detector: str
    hf_embedder: str
    hf_labels: str
    hf_allow_download: bool
    voxel_size_m: float
    depth_min_m: float
    depth_max_m: float
    allocation_stride: int
    keyframe_every_n: int
    async_keyframes: bool
    keyframe_min_novelty: float
    keyframe_pool: int
    model_threads: int
    blas_threads: int
    keyframe_refresh_s: float
    cloud_period_s: float
    diagnostics_period_s: float
    map_dir: str
    save_on_shutdown: bool
    query_max_results: int
    max_stamp_ahead_s: float
    clock_jump_s: float
    on_clock_jump: str
    map_paths_anywhere: bool
    max_map_file_mb: int
    max_image_pixels: int
    query_max_busy_share: float

    def pipeline_config(self) -> PipelineConfig:
        device = {"auto": "auto", "cpu": "CPU:0", "cuda": "CUDA:0"}[self.device]
        return PipelineConfig(
            fusion=FusionConfig(voxel_size_m=self.voxel_size_m, depth_min_m=self.depth_min_m,
                                depth_max_m=self.depth_max_m, allocation_stride=self.allocation_stride or None,
                                device=device, raise_on_invalid=False),
            pose_source="odometry" if self.pose_source == "odometry" else "given",
            # odometry starts the map at a level camera at the origin: the floor is below it, not at z = 0
            segmenter=SegmenterConfig(floor_height_m=None) if self.pose_source == "odometry" else SegmenterConfig(),
            keyframe_every_n=self.keyframe_every_n, async_keyframes=self.async_keyframes,
            keyframe_min_novelty=self.keyframe_min_novelty, keyframe_pool=self.keyframe_pool,
            keyframe_refresh_s=self.keyframe_refresh_s, up_axis=self.up_axis, map_frame=self.output_frame,
            clock_jump_s=self.clock_jump_s, on_clock_jump=self.on_clock_jump)

    @property
    def output_frame(self) -> str:
        """Frame of the node's outputs: map_frame, or its z-up copy when map_frame's up is another axis."""
        return self.map_frame if self.up_axis == "+z" else f"{self.map_frame}_zup"


class NoCameraInfo(LookupError):
    pass


def require_cuda(torch_needed: bool) -> None:
    """device 'cuda' without CUDA is refused before anything loads, naming what lacks it, instead of failing deep
    inside Open3D or torch; 'auto' is the fall-back (CUDA where there is one, else the CPU)."""
    import open3d as o3d
    import open3d.core as o3c

    missing = []
    if not o3c.cuda.is_available():
        built = getattr(o3d, "_build_config", {}).get("BUILD_CUDA_MODULE", False)
        why = "sees no CUDA device" if built else "was built without CUDA"
        missing.append(f"Open3D {o3d.__version__} (fusion) {why}")
    if torch_needed:
        import torch

        if not torch.cuda.is_available():
            why = "is a CPU-only build" if torch.version.cuda is None else "sees no CUDA device"
            missing.append(f"torch {torch.__version__} (the model) {why}")
    if missing:
        raise ParameterError(f"parameter device='cuda' cannot be met: {'; '.join(missing)}. Use device:=auto (CUDA "
                             "where available, else the CPU) or device:=cpu; for CUDA builds see the README, "
                             "'GPU or Jetson'")


class UnsupportedDistortion(ValueError):
    pass


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB, from /proc/self/status. ru_maxrss is no substitute
    for the peak: it survives exec, so a node started by a large process reported that process's size."""
    try:
        status = Path("/proc/self/status").read_text()
        kb = {k: float(v.split()[0]) for k, v in (line.split(":", 1) for line in status.splitlines())
              if k in ("VmRSS", "VmHWM")}
        return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024
    except (OSError, ValueError, KeyError):  # no procfs (macOS): the peak is the best there is
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


class PerceptionNode(Node):
    def __init__(self, **kwargs):
        super().__init__("g2vlm_perception", **kwargs)
        self.cfg: NodeConfig = declare_and_read(self, PARAMS, NodeConfig)
        if self.cfg.blas_threads > 0:
            limit_blas_threads(self.cfg.blas_threads)
        if self.cfg.device == "cuda":  # torch runs the hf recognizer and the G2VLM model (recognizer or reasoner)
            require_cuda(torch_needed=self.cfg.recognizer == "hf" or (
                self.cfg.recognizer != "none" and resolve_checkpoint(self.cfg.model_checkpoint) is not None))
        pipeline_cfg = self.cfg.pipeline_config()
        labeller = self._load_labeller(pipeline_cfg)
        self.pipeline = PerceptionPipeline(pipeline_cfg, labeller, on_keyframe=lambda graph: self._publish_graph())
        self.rejected: Counter[str] = Counter()
        self.received = Counter()
        self._camera_info: CameraInfo | None = None
        self._poses: deque[tuple[float, np.ndarray]] = deque(maxlen=200)
        self._latencies_ms: deque[float] = deque(maxlen=500)
        self._stage_ms: dict[str, deque[float]] = {}  # per fused frame: the worker's stages (see _process)
        self._fused_stamps: deque[float] = deque(maxlen=100)
        self._last_warn: dict[str, float] = {}
        self._last_detail: dict[str, str] = {}
        self.poses_normalised = 0
        self._pose_newest: float | None = None
        self._undistort = Undistorter()
        self._graph_seq_published = -1
        self._tf_buffer = None

        qos = sensor_qos(self.cfg.sensor_reliable)
        self._slot = LatestSlot()
        self._sync = FrameSync(self.cfg.sync_slop_s, self._on_pair, on_drop=self._on_sync_drop,
                               jump_back_s=self.cfg.clock_jump_s, max_ahead_s=self.cfg.max_stamp_ahead_s,
                               now=self._now_s)
        # Images and the small messages a frame waits for (pose, camera_info) in separate groups: under a
        # multi-threaded executor (e.g. when composed with other nodes) one group would keep serving the busy image
        # subscriptions first and a frame's pose would arrive a second late. main() spins one thread.
        images, side = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.create_subscription(Image, self.cfg.rgb_topic, lambda m: self._on_image(0, m), qos, callback_group=images)
        self.create_subscription(Image, self.cfg.depth_topic, lambda m: self._on_image(1, m), qos,
                                 callback_group=images)
        self.create_subscription(CameraInfo, self.cfg.camera_info_topic, self._on_camera_info, qos,
                                 callback_group=side)
        if self.cfg.pose_source == "topic":
            self.create_subscription(PoseStamped, self.cfg.pose_topic, self._on_pose, RELIABLE, callback_group=side)
        elif self.cfg.pose_source == "tf":
            try:
                from tf2_ros import Buffer, TransformListener
            except ImportError as e:
                raise RuntimeError("pose_source 'tf' needs tf2_ros (a ROS 2 distro); use 'topic' or 'odometry'") from e
            self._tf_buffer = Buffer()
            self._tf_listener = TransformListener(self._tf_buffer, self)

        self.pub_cloud = self.create_publisher(PointCloud2, "cloud", RELIABLE)
        self.pub_graph = self.create_publisher(SceneGraphMsg, "scene_graph", LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, "markers", LATCHED)
        self.pub_pose = self.create_publisher(PoseStamped, "camera_pose", RELIABLE)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        # One Header per handled frame (its stamp; frame_id "fused", "keyframe" or the skip reason): lets a bag
        # player pace itself to the node and a benchmark measure latency without polling diagnostics.
        self.pub_processed = self.create_publisher(Header, "processed", RELIABLE)

        # Nouns match labels by the word tables, then by MiniLM similarity: the model's own MiniLM when it is
        # loaded, else the shipped one on first need; the model's grounding head orders the candidates.
        engine = QueryEngine(QueryConfig(default_max_results=self.cfg.query_max_results),
                             **(labeller.query_args() if labeller is not None else
                                {"text_embedder": TextEmbedder.minilm().background()}))
        self.query = QueryService(self, engine, self.pipeline.snapshot, self._viewpoint,
                                  max_busy_share=self.cfg.query_max_busy_share)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "reset", self._on_reset, callback_group=services)
        self.create_service(SaveMap, "save_map", self._on_save, callback_group=services)
        self.create_service(LoadMap, "load_map", self._on_load, callback_group=services)
        timers = MutuallyExclusiveCallbackGroup()
        if self.cfg.cloud_period_s > 0:
            self.create_timer(self.cfg.cloud_period_s, self._publish_cloud, callback_group=timers)
        self.create_timer(self.cfg.diagnostics_period_s, self._publish_diagnostics, callback_group=timers)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="g2vlm_worker", daemon=True)
        self._worker.start()
        self._announce_output_frame()
        self.get_logger().info(f"listening on {self.resolve_topic_name(self.cfg.rgb_topic)}, "
                               f"{self.resolve_topic_name(self.cfg.depth_topic)}, pose from {self.cfg.pose_source}; "
                               f"fusion on {self.pipeline.fusion.device}; pairing with {self._sync.backend}")

    def _announce_output_frame(self) -> None:
        """With up_axis other than +z the outputs are in '<map_frame>_zup': put it on /tf_static when tf2_ros is
        there, and say how it relates to map_frame either way."""
        if self.cfg.up_axis == "+z":
            return
        T_map_zup = np.linalg.inv(self.pipeline.T_zup_input)  # the z-up frame's pose in map_frame
        msg = (f"up_axis {self.cfg.up_axis}: outputs are in '{self.cfg.output_frame}', map_frame turned so that "
               f"{self.cfg.up_axis} becomes +z (rotation rows {np.round(T_map_zup[:3, :3].T, 3).tolist()})")
        try:
            from tf2_ros import StaticTransformBroadcaster
        except ImportError:
            self.get_logger().info(msg + "; no tf2_ros here to publish it on /tf_static")
            return
        from geometry_msgs.msg import Transform, TransformStamped, Vector3
        pose = cv.matrix_to_pose(T_map_zup)
        tf = TransformStamped(header=Header(frame_id=self.cfg.map_frame, stamp=self.get_clock().now().to_msg()),
                              child_frame_id=self.cfg.output_frame,
                              transform=Transform(translation=Vector3(), rotation=pose.orientation))
        self._static_tf = StaticTransformBroadcaster(self)
        self._static_tf.sendTransform(tf)
        self.get_logger().info(msg + "; published on /tf_static")

    def _load_labeller(self, pipeline_cfg: PipelineConfig) -> KeyframeLabeller | None:
        c = self.cfg
        if c.recognizer == "none":
            self.get_logger().warning("no recognizer: objects are class-agnostic (label 'object'); queries can use "
                                      "colours, sizes and relations but not categories")
            return None
        import torch

        if c.model_threads > 0:
            torch.set_num_threads(c.model_threads)
        device = "cuda" if c.device == "cuda" or (c.device == "auto" and torch.cuda.is_available()) else "cpu"
        hf = {} if c.recognizer != "hf" else {
            "detector": c.hf_detector, "embedder": c.hf_embedder, "allow_download": c.hf_allow_download,
            "labels": tuple(s.strip() for s in c.hf_labels.split(",") if s.strip())}
        # MissingExtraError / RecognizerError / FileNotFoundError name what to install or which folder is wrong
        try:
            labeller = make_labeller(c.recognizer, Segmenter(pipeline_cfg.segmenter), device, c.model_checkpoint,
                                     **hf)
        except ValueError as e:  # parameters that do not go together (recognizer g2vlm without a model)
            raise ParameterError(f"parameters recognizer={c.recognizer!r}, model_checkpoint={c.model_checkpoint!r}: "
                                 f"{e}") from e
        reasoner = getattr(labeller, "reasoner", None)
        self.get_logger().info(f"recognizer {labeller.recognizer.describe()}" +
                               (f"; G2VLM model beside it on {device}" if reasoner is not None else ""))
        return labeller

    # ------------------------------------------------------------------------------------------- inputs
    def _warn_throttled(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) > 5.0:  # one warning per kind every 5 s
            self._last_warn[key] = now
            self.get_logger().warning(text)

    def _reject(self, reason: str, detail: str, stamp=None) -> None:
        self.rejected[reason] += 1
        self._last_detail[reason] = detail
        if stamp is not None:
            self.pub_processed.publish(Header(stamp=stamp, frame_id=reason))
        # details that differ only in numbers share a throttle: "all NaN" and "all zero" depth each get a line
        self._warn_throttled(reason + ":" + re.sub(r"[-+.\d]+", "#", detail),
                             f"frame skipped ({reason}, {self.rejected[reason]} so far): {detail}")

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, index: int, msg: Image) -> None:
        self.received["rgb" if index == 0 else "depth"] += 1
        pixels = int(msg.width) * int(msg.height)
        if pixels > self.cfg.max_image_pixels:
            if index == 1:  # count a frame once: by its depth image
                self._reject("image_too_large", f"{msg.width}x{msg.height} images have more than max_image_pixels="
                             f"{self.cfg.max_image_pixels} pixels", msg.header.stamp)
            return
        self._sync.add(index, msg)

    def _on_sync_drop(self, index: int, msg: Image, reason: str, detail: str) -> None:
        stream = ("rgb", "depth")[index]
        t = f"{stream} stamped {cv.stamp_to_sec(msg.header.stamp):.3f}"
        if reason == "unpaired":
            self._reject(f"unpaired_{stream}", f"{t}: {detail}", msg.header.stamp)
        elif index == 1:  # a future rgb leaves its depth unpaired, counted there
            self._reject(reason, f"{t}: {detail}", msg.header.stamp)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_pose(self, msg: PoseStamped) -> None:
        stamp = cv.stamp_to_sec(msg.header.stamp)
        now = self._now_s()
        if self.cfg.max_stamp_ahead_s > 0 and now > 0 and stamp - now > self.cfg.max_stamp_ahead_s:
            self._reject("bad_pose", f"pose stamped {stamp - now:.3f} s ahead of this node's clock")
            return
        q = msg.pose.orientation
        norm = float(np.linalg.norm([q.x, q.y, q.z, q.w]))
        try:
            T = cv.pose_to_matrix(msg.pose)  # normalises the quaternion
        except cv.ConversionError as e:
            self._reject("bad_pose", str(e))
            return
        if abs(norm - 1.0) > 1e-3:
            self.poses_normalised += 1
            self._warn_throttled("pose_normalised", f"pose quaternion of norm {norm:.4f} normalised "
                                 f"({self.poses_normalised} so far): the pose source should send unit quaternions")
        if self._pose_newest is not None and stamp < self._pose_newest - self.cfg.clock_jump_s:
            self._poses.clear()  # the pose source's clock jumped back: its old poses belong to another recording
            self._pose_newest = None
        self._pose_newest = stamp if self._pose_newest is None else max(self._pose_newest, stamp)
        self._poses.append((stamp, T))

    def _on_pair(self, rgb: Image, depth: Image) -> None:
        self.received["pairs"] += 1
        replaced = self._slot.put((rgb, depth, time.monotonic()))
        if replaced is not None:  # the worker was still busy: the older frame is replaced
            self._reject("dropped_busy", "a newer frame arrived while the worker was busy", replaced[1].header.stamp)

    def _pose_for(self, stamp_s: float, frame_id: str) -> np.ndarray | None:
        if self.cfg.pose_source == "odometry":
            return None
        if self.cfg.pose_source == "tf":
            tf = self._tf_buffer.lookup_transform(self.cfg.map_frame, frame_id, Time(nanoseconds=int(stamp_s * 1e9)))
            return cv.transform_to_matrix(tf.transform)
        if not self._poses:
            raise LookupError("no pose received yet on " + self.resolve_topic_name(self.cfg.pose_topic))
        ts = np.array([p[0] for p in self._poses])
        i = int(np.argmin(np.abs(ts - stamp_s)))
        if abs(ts[i] - stamp_s) > self.cfg.pose_max_age_s:
            raise LookupError(f"no pose within {self.cfg.pose_max_age_s} s of the frame (nearest "
                              f"{ts[i] - stamp_s:+.3f} s)")
        return self._poses[i][1]

    def _wait_for(self, lookup):
        """lookup() retried until it stops raising LookupError or pose_wait_s passes (then the error propagates)."""
        end = time.monotonic() + self.cfg.pose_wait_s
        while True:
            try:
                return lookup()
            except LookupError:
                if time.monotonic() >= end or self._stop.is_set():
                    raise
                time.sleep(0.005)

    def _info(self) -> CameraInfo:
        if self._camera_info is None:
            raise NoCameraInfo("no camera_info received yet on " + self.resolve_topic_name(self.cfg.camera_info_topic))
        return self._camera_info

    def _to_frame(self, rgb: Image, depth: Image) -> RGBDFrame:
        rgb_np = cv.rgb_from_image(rgb)
        depth_m = cv.depth_from_image(depth)
        if rgb_np.shape[:2] != depth_m.shape:
            raise cv.ConversionError(f"colour image {rgb.width}x{rgb.height} and depth image "
                                     f"{depth.width}x{depth.height} differ: register depth to colour")
        # the newest camera_info when the frame is handled: drivers and bags may send it just after the images
        intr = cv.camera_info_to_intrinsics(self._wait_for(self._info), depth_m.shape)
        if any(intr.distortion):
            if intr.distortion_model not in UNDISTORT_MODELS:
                raise UnsupportedDistortion(f"CameraInfo.distortion_model {intr.distortion_model!r} with non-zero "
                                            f"coefficients: only {', '.join(UNDISTORT_MODELS)} are undistorted")
            try:
                rgb_np, depth_m, intr = self._undistort(rgb_np, depth_m, intr)
            except (ImportError, GeometryError) as e:  # no OpenCV, or a coefficient count the model does not have
                raise UnsupportedDistortion(f"cannot undistort {intr.distortion_model}: {e}") from e
        stamp = cv.stamp_to_sec(depth.header.stamp)
        T = self._wait_for(lambda: self._pose_for(stamp, depth.header.frame_id))
        return RGBDFrame(rgb_np, depth_m, intr, T, stamp)

    # ------------------------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            item = self._slot.get(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as e:  # the worker must outlive any single frame
                if not self.context.ok():
                    return  # shutting down: publishers are gone
                self._reject("internal_error", repr(e), item[1].header.stamp)

    def _process(self, rgb: Image, depth: Image, t_recv: float) -> None:
        stamp = depth.header.stamp
        t0 = time.perf_counter()
        try:
            frame = self._to_frame(rgb, depth)
        except cv.ConversionError as e:
            self._reject("bad_message", str(e), stamp)
            return
        except NoCameraInfo as e:
            self._reject("no_camera_info", str(e), stamp)
            return
        except UnsupportedDistortion as e:
            self._reject("unsupported_distortion", str(e), stamp)
            return
        except LookupError as e:
            self._reject("no_pose", str(e), stamp)
            return
        except Exception as e:  # tf2 lookup exceptions have no common base class here
            self._reject("frame_error", repr(e), stamp)
            return
        t1 = time.perf_counter()
        report = self.pipeline.process(frame, t_received=t_recv)
        if report.clock_jump_s > 0:
            self.get_logger().warning(
                f"the frames' clock jumped back {report.clock_jump_s:.3f} s (to t={frame.stamp_s:.3f}; "
                f"{self.pipeline.clock_jumps} so far): a new recording, "
                + ("map cleared (on_clock_jump: reset)" if self.cfg.on_clock_jump == "reset" else "mapping goes on"))
            self._publish_graph()
        if not report.fused:
            self._reject(report.skipped_reason, f"frame at t={frame.stamp_s:.3f}: {report.skipped_detail}", stamp)
            return
        t2 = time.perf_counter()
        self._fused_stamps.append(time.monotonic())
        self._publish_pose(report.T_world_cam, frame.stamp_s)
        self._latencies_ms.append((time.monotonic() - t_recv) * 1e3)
        self.pub_processed.publish(Header(stamp=stamp, frame_id="keyframe" if report.keyframe else "fused"))
        t3 = time.perf_counter()
        # The fusion path per frame: message -> arrays (+ waiting for pose / camera_info when they lag), the
        # pipeline's stages (validate, track, fusion_prepare = our masks and copies, fusion_open3d = Open3D's calls,
        # keyframe = offering the candidate, or the whole keyframe when inline), publication; "fusion_path" is their
        # sum without inline keyframe work.
        stages = {"convert": (t1 - t0) * 1e3, "publish": (t3 - t2) * 1e3, **report.timings_ms}
        stages["fusion_path"] = (t3 - t0) * 1e3 - (report.timings_ms.get("keyframe", 0.0)
                                                   if not self.cfg.async_keyframes else 0.0)
        for k, v in stages.items():
            self._stage_ms.setdefault(k, deque(maxlen=300)).append(v)

    # ------------------------------------------------------------------------------------------- outputs
    def _header(self, stamp_s: float | None = None) -> Header:
        stamp = self.get_clock().now().to_msg() if stamp_s is None else cv.sec_to_stamp(max(stamp_s, 0.0))
        return Header(frame_id=self.cfg.output_frame, stamp=stamp)

    def _publish_pose(self, T: np.ndarray, stamp_s: float) -> None:
        self.pub_pose.publish(PoseStamped(header=self._header(stamp_s), pose=cv.matrix_to_pose(T)))

    def _publish_graph(self) -> None:
        graph = self.pipeline.snapshot()
        if graph.sequence == self._graph_seq_published:
            return
        self._graph_seq_published = graph.sequence
        self.pub_graph.publish(cv.scene_graph_to_msg(graph))
        self.pub_markers.publish(scene_graph_markers(graph, self._header(graph.stamp_s)))

    def _publish_cloud(self) -> None:
        if self.pub_cloud.get_subscription_count() == 0 or self.pipeline.frames_fused == 0:
            return  # extraction costs tens of ms: only for someone listening
        pts, cols = self.pipeline.point_cloud()
        self.pub_cloud.publish(cv.xyz_to_pointcloud2(pts, cols, self._header()))

    def _publish_diagnostics(self) -> None:
        self._sync.flush()  # images whose partner never came (a stream that stopped) are reported unpaired
        lat = np.array(self._latencies_ms)
        fused = list(self._fused_stamps)
        rate = (len(fused) - 1) / (fused[-1] - fused[0]) if len(fused) > 1 and fused[-1] > fused[0] else 0.0
        stats = self.pipeline.fusion.stats()
        rss, rss_peak = rss_mb()
        values = {
            "frames_received": self.received["pairs"], "frames_fused": self.pipeline.frames_fused,
            "keyframes": self.pipeline.keyframes, "keyframes_dropped": self.pipeline.keyframes_dropped,
            **self._keyframe_diagnostics(), **self._stage_diagnostics(),
            "fused_rate_hz": f"{rate:.2f}",
            "latency_p50_ms": f"{np.percentile(lat, 50):.1f}" if lat.size else "n/a",
            "latency_p95_ms": f"{np.percentile(lat, 95):.1f}" if lat.size else "n/a",
            "queue_depth": int(self._slot.full()), "objects": len(self.pipeline.snapshot().objects),
            "map_blocks": stats.active_blocks, "map_mb": f"{stats.active_mb:.1f}",
            "rss_mb": f"{rss:.0f}", "rss_peak_mb": f"{rss_peak:.0f}",
            "clock_jumps_back": self.pipeline.clock_jumps, "keyframe_errors": self.pipeline.skipped["keyframe_error"],
            "poses_normalised": self.poses_normalised, "sync_backend": self._sync.backend,
            "queries_answered": self.query.answered, "queries_busy": self.query.busy,
        }
        values.update({f"rejected_{k}": v for k, v in sorted(self.rejected.items())})
        values.update({f"detail_{k}": v for k, v in sorted(self._last_detail.items())})
        level = DiagnosticStatus.OK if not self.rejected and self.pipeline.gravity.state != "mismatch" \
            else DiagnosticStatus.WARN
        status = DiagnosticStatus(level=level, name="g2vlm_perception", hardware_id="",
                                  message=f"{self.pipeline.frames_fused} frames fused, "
                                          f"{sum(self.rejected.values())} skipped",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.pub_diag.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    def _keyframe_diagnostics(self) -> dict:
        """What keyframe work kept up with: candidates offered / selected / done, skips by reason, recognition
        latency (frame arrival -> its objects published), and the share of the map recognised by keyframes."""
        p = self.pipeline
        lat = np.array(p.recognition_latency_ms)
        out = {"keyframes_offered": p.keyframes_offered, "keyframes_selected": p.keyframes_selected,
               "keyframes_labelled": p.keyframes_labelled, "keyframes_failed": p.keyframes_failed,
               "recognition_latency_p50_ms": f"{np.percentile(lat, 50):.0f}" if lat.size else "n/a",
               "recognition_latency_p95_ms": f"{np.percentile(lat, 95):.0f}" if lat.size else "n/a",
               "keyframe_work_ms_p50": f"{np.median(p.keyframe_ms):.0f}" if p.keyframe_ms else "n/a",
               "surface_recognised":
                   f"{min(1.0, len(p.scheduler.coverage) / max(p.fusion.stats().active_blocks, 1)):.2f}"}
        out.update({f"keyframes_skipped_{k}": v for k, v in sorted(p.keyframes_skipped.items())})
        g = p.gravity
        out["gravity_check"] = g.state if g.state != "mismatch" else f"mismatch: {g.message}"
        if p.tracker is not None:
            t = p.tracker
            out.update({"tracking_state": t.last.state if t.last else "n/a",
                        "tracking_quality": f"{t.last.quality:.2f}" if t.last else "n/a",
                        "tracking_lost_frames": t.counts["lost"], "tracking_relocalised": t.counts["relocalised"]})
        return out

    def _stage_diagnostics(self) -> dict:
        """Median ms of each stage of the fusion path over the last 300 fused frames."""
        return {f"{k}_ms_p50": f"{np.median(v):.2f}" for k, v in sorted(self._stage_ms.items()) if v}

    def _viewpoint(self, frame: str):
        if frame not in ("", self.pipeline.config.camera_frame):
            raise LookupError(f"viewpoint_frame {frame!r}: only the live camera ('' or "
                              f"'{self.pipeline.config.camera_frame}') is supported")
        return self.pipeline.viewpoint()

    # ------------------------------------------------------------------------------------------- services
    def _on_reset(self, req, resp):
        try:
            self.pipeline.reset()
            self._sync.reset()  # its queued images are reported unpaired
            self._poses.clear()
            self._pose_newest = None
            pending = self._slot.get(timeout=0.0)
            if pending is not None:
                self._reject("dropped_reset", "taken by a reset before it was fused", pending[1].header.stamp)
            self._publish_graph()
            resp.success, resp.message = True, "map and time state cleared"
        except Exception as e:  # noqa: BLE001  a service callback must never end the node
            resp.success, resp.message = False, self._service_error("reset", e)
        return resp

    def _service_error(self, action: str, e: Exception) -> str:
        """The reply's reason; logged, with the traceback when it is not an expected OSError / ValueError."""
        if isinstance(e, (OSError, ValueError)):
            self.get_logger().warning(f"cannot {action}: {e}")
            return f"cannot {action}: {e}"
        self.get_logger().error(f"cannot {action}: {e!r}\n{traceback.format_exc()}")
        return f"cannot {action}: internal error {e!r}"

    def map_path(self, directory: str = "") -> Path:
        """The folder a save_map / load_map request names: relative to map_dir, and inside it unless
        map_paths_anywhere (PermissionError otherwise)."""
        base = Path(self.cfg.map_dir).expanduser().resolve()
        path = (base / Path(directory).expanduser()).resolve() if directory else base
        if not self.cfg.map_paths_anywhere and path != base and base not in path.parents:
            raise PermissionError(f"{directory!r} resolves to {path}, outside map_dir {base} "
                                  "(map_paths_anywhere:=true allows other folders)")
        return path

    def save(self, directory: str = "") -> tuple[Path, Path]:
        return self.pipeline.save(self.map_path(directory))

    def _on_save(self, req, resp):
        try:
            ply, graph = self.save(req.directory)
            resp.success, resp.cloud_path, resp.graph_path = True, str(ply), str(graph)
            resp.message = f"saved {len(self.pipeline.snapshot().objects)} objects"
        except Exception as e:  # noqa: BLE001  a service callback must never end the node
            resp.success, resp.message = False, self._service_error("save", e)
        return resp

    def _on_load(self, req, resp):
        try:
            graph = self.pipeline.load(self.map_path(req.directory), max_file_bytes=self.cfg.max_map_file_mb * 2**20)
            resp.success, resp.object_count, resp.message = True, len(graph.objects), "loaded"
            self._publish_graph()
        except Exception as e:  # noqa: BLE001  a service callback must never end the node; the map is untouched
            resp.success, resp.message = False, self._service_error("load", e)
        return resp

    def shutdown(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10.0)
        self.pipeline.close()  # finishes a queued keyframe, so a saved map has it
        if self.cfg.save_on_shutdown and self.pipeline.frames_fused:
            ply, graph = self.save()
            self.get_logger().info(f"map saved on shutdown: {ply}, {graph}")


def main(args=None) -> int:
    # One executor thread: every callback only stores its message (the worker thread and the keyframe thread do the
    # work), and rclpy's MultiThreadedExecutor busy-loops in Python over ready callbacks it may not run yet, which
    # took the GIL from them: benchmarks/bench_node.py (640x480, 2-core CPU) 9.8 fused frames/s with 4 executor
    # threads, 30.9 with one, same run conditions. Spatial queries, the one callback that does real work, run on a
    # query thread of their own (QueryOffloadExecutor), so a slow query never holds up the camera callbacks.
    return spin_node(PerceptionNode, num_threads=1, args=args,
                     make_executor=lambda node: QueryOffloadExecutor([node.query.group]))


if __name__ == "__main__":
    sys.exit(main())
