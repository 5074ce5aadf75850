"""Pure message <-> numpy / g2vlm_core conversions (no node, no rclpy.init): Image, CameraInfo, PointCloud2, scene graph.

Every function is vectorised (no per-pixel or per-point Python loops) and raises ``ConversionError`` (a
ValueError) whose message names the offending message field. cv_bridge and sensor_msgs_py are not
pip-installable, and the node must run without a ROS distro, so these few functions are written here; where
those packages exist, tests check that both agree.
"""
from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header

from g2vlm_core.geometry.camera import CameraIntrinsics, GeometryError
from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject, SpatialRelation

from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.msg import SceneObject as SceneObjectMsg
from g2vlm_ros.msg import SpatialRelation as SpatialRelationMsg


class ConversionError(ValueError):
    """A message cannot be converted; the message names the field (e.g. ``Image.step``)."""


# encoding -> (numpy dtype, channels); sensor_msgs/image_encodings names.
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3), "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4), "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1), "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1), "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def _bytes_array(buf) -> array.array:
    # rclpy keeps uint8[] fields as array.array('B'); handing one over skips its per-element type check.
    out = array.array("B")
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
    out.frombytes(buf)
    return out


# Jazzy and newer build messages unchecked by default, and then copy an array.array assigned to a uint8[] field
# element by element (about 1 ms per 5 MB). With check_fields=True the setter keeps the array as is, which is
# also what Humble's messages always do (they have no check_fields and reject the keyword).
_FAST = {"check_fields": True} if hasattr(Image(), "_check_fields") else {}


# ----------------------------------------------------------------------------------------------- time
def stamp_to_sec(stamp: Time) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def sec_to_stamp(t: float) -> Time:
    if not math.isfinite(t) or t < 0:
        raise ConversionError(f"Time: stamp must be finite and non-negative, got {t}")
    sec = int(math.floor(t))
    nanosec = min(int(round((t - sec) * 1e9)), 999_999_999)
    return Time(sec=sec, nanosec=nanosec)


# ---------------------------------------------------------------------------------------------- Image
def image_to_numpy(msg: Image) -> np.ndarray:
    """Image -> array ``(H, W)`` or ``(H, W, C)`` of the encoding's dtype in native byte order.

    Honours ``step`` (row padding) and ``is_bigendian``. The result is a read-only view of ``msg.data``
    whenever no byte swap is needed (copy it before writing to it).
    """
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise ConversionError(f"Image.encoding {enc!r} is not supported; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f"Image.height/width must be positive, got {w}x{h}")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(f"Image.step {step} is smaller than width*channels*bytes = {row_bytes} for {enc}")
    n = len(msg.data)
    if n != h * step:
        raise ConversionError(f"Image.data has {n} bytes but height*step = {h}*{step} = {h * step}")
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    dt = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    if step % dtype.itemsize == 0:  # a strided view over the padded rows, no copy
        arr = np.ndarray((h, w * channels), dtype=dt, buffer=raw, strides=(step, dtype.itemsize))
    else:  # rows not aligned to the element size: realign with one copy
        arr = np.ascontiguousarray(raw.reshape(h, step)[:, :row_bytes]).view(dt)
    if not arr.dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))  # byte-swap into native order (one copy)
    return arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None,
                   step: int | None = None, is_bigendian: bool = False) -> Image:
    """Array -> Image of ``encoding`` (dtype and channel count must match); optional row padding and byte order."""
    if encoding not in IMAGE_ENCODINGS:
        raise ConversionError(f"Image.encoding {encoding!r} is not supported; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] != channels or a.dtype != dtype:
        raise ConversionError(f"Image.encoding {encoding} needs (H, W{', %d' % channels if channels > 1 else ''}) "
                              f"{dtype}, got {arr.shape} {arr.dtype}")
    h, w = a.shape[:2]
    row_bytes = w * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ConversionError(f"Image.step {step} is smaller than the row size {row_bytes}")
    a = a.astype(dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    if step == row_bytes:
        data = np.ascontiguousarray(a).tobytes()
    else:
        rows = np.zeros((h, step), dtype=np.uint8)
        rows[:, :row_bytes] = np.ascontiguousarray(a).view(np.uint8).reshape(h, row_bytes)
        data = rows.tobytes()
    msg = Image(**_FAST, height=h, width=w, encoding=encoding, is_bigendian=int(bool(is_bigendian)), step=step)
    if header is not None:
        msg.header = header
    msg.data = _bytes_array(data)
    return msg


def rgb_from_image(msg: Image) -> np.ndarray:
    """Colour Image (rgb8, bgr8, rgba8, bgra8, mono8) -> ``(H, W, 3)`` uint8 RGB."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ConversionError(f"Image.encoding {msg.encoding!r} is not a colour encoding; expected one of "
                              f"{', '.join(COLOR_ENCODINGS)}")
    a = image_to_numpy(msg)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if msg.encoding.startswith("bgr"):
        return np.ascontiguousarray(a[..., 2::-1])
    return np.ascontiguousarray(a[..., :3])


def depth_from_image(msg: Image) -> np.ndarray:
    """Depth Image -> ``(H, W)`` float32 metres: 16UC1/mono16 are millimetres (0 = missing), 32FC1 metres.

    Values are passed through otherwise (NaN, inf or negative depths stay as they are for the caller to reject).
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ConversionError(f"Image.encoding {msg.encoding!r} is not a depth encoding; expected one of "
                              f"{', '.join(DEPTH_ENCODINGS)}")
    a = image_to_numpy(msg)
    if a.dtype == np.uint16:
        return a.astype(np.float32) * np.float32(0.001)
    return np.array(a, dtype=np.float32)


def depth_to_image(depth_m: np.ndarray, encoding: str = "32FC1", header: Header | None = None) -> Image:
    """``(H, W)`` metres -> 32FC1 (metres) or 16UC1 (millimetres, rounded; invalid and out-of-range -> 0)."""
    d = np.asarray(depth_m, dtype=np.float32)
    if encoding == "32FC1":
        return numpy_to_image(d, encoding, header)
    if encoding in ("16UC1", "mono16"):
        mm = np.where(np.isfinite(d) & (d > 0), np.rint(d * 1000.0), 0.0)
        return numpy_to_image(np.where(mm <= 65535, mm, 0).astype(np.uint16), encoding, header)
    raise ConversionError(f"Image.encoding {encoding!r} is not a depth encoding; expected 32FC1 or 16UC1")


# ----------------------------------------------------------------------------------------- CameraInfo
def camera_info_to_intrinsics(msg: CameraInfo, image_shape: tuple[int, int] | None = None) -> CameraIntrinsics:
    """CameraInfo -> CameraIntrinsics of the image actually delivered (binning and ROI applied).

    ``image_shape`` (H, W), when given, must agree with the camera size.
    """
    k = np.asarray(msg.k, dtype=np.float64)
    if k.shape != (9,):
        raise ConversionError(f"CameraInfo.k must have 9 elements, got {k.size}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if not (np.isfinite(fx) and fx > 0 and np.isfinite(fy) and fy > 0):
        raise ConversionError(f"CameraInfo.k has a zero, negative or non-finite focal length (fx={fx}, fy={fy})")
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    roi = msg.roi
    width, height = int(msg.width), int(msg.height)
    if roi.width > 0 and roi.height > 0:
        width, height = int(roi.width), int(roi.height)
        cx, cy = cx - roi.x_offset, cy - roi.y_offset
    width, height = width // bx, height // by
    if width <= 0 or height <= 0:
        raise ConversionError(f"CameraInfo.width/height must be positive, got {msg.width}x{msg.height}")
    if image_shape is not None and tuple(image_shape[:2]) != (height, width):
        raise ConversionError(f"CameraInfo.width/height {width}x{height} disagree with the image "
                              f"{image_shape[1]}x{image_shape[0]}")
    try:
        return CameraIntrinsics(width, height, fx / bx, fy / by, cx / bx, cy / by,
                                distortion_model=msg.distortion_model, distortion=tuple(msg.d))
    except GeometryError as e:
        raise ConversionError(f"CameraInfo: {e}") from e


def intrinsics_to_camera_info(intr: CameraIntrinsics, header: Header | None = None) -> CameraInfo:
    msg = CameraInfo(width=intr.width, height=intr.height, distortion_model=intr.distortion_model or "plumb_bob")
    if header is not None:
        msg.header = header
    msg.k = intr.K.reshape(-1).tolist()
    msg.d = list(intr.distortion)
    msg.r = np.eye(3).reshape(-1).tolist()
    P = np.zeros((3, 4))
    P[:, :3] = intr.K
    msg.p = P.reshape(-1).tolist()
    return msg


# ---------------------------------------------------------------------------------------- PointCloud2
_PF_DTYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
              PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def xyz_to_pointcloud2(points: np.ndarray, colors: np.ndarray | None = None,
                       header: Header | None = None) -> PointCloud2:
    """Points ``(N, 3)`` (+ colours ``(N, 3)``, uint8 or float in [0, 1]) -> unorganised PointCloud2.

    Fields x, y, z float32 and, with colours, ``rgb``: the 0x00RRGGBB integer stored in a FLOAT32 field, the
    layout RViz and PCL read.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ConversionError(f"PointCloud2: points must be (N, 3), got {pts.shape}")
    n = pts.shape[0]
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate("xyz")]
    if colors is not None:
        cols = np.asarray(colors)
        if cols.shape != (n, 3):
            raise ConversionError(f"PointCloud2: colors must be (N, 3) like points {pts.shape}, got {cols.shape}")
        if np.issubdtype(cols.dtype, np.floating):
            cols = np.clip(np.rint(cols * 255.0), 0, 255).astype(np.uint8)
        c = cols.astype(np.uint32)
        buf = np.empty((n, 4), dtype="<f4")
        for i in range(3):  # column by column: ~3x faster than one strided (N, 3) block copy
            buf[:, i] = pts[:, i]
        buf.view("<u4")[:, 3] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
        point_step = 16
    else:
        buf = np.ascontiguousarray(pts, dtype="<f4")
        point_step = 12
    msg = PointCloud2(**_FAST, height=1, width=n, fields=fields, is_bigendian=False, point_step=point_step,
                      row_step=point_step * n, is_dense=bool(np.isfinite(pts).all()))
    if header is not None:
        msg.header = header
    msg.data = _bytes_array(buf)
    return msg


def pointcloud2_to_xyz(msg: PointCloud2, skip_nans: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 -> points ``(N, 3)`` float32 and colours ``(N, 3)`` uint8 (None without an rgb/rgba field).

    Reads any field layout and byte order (x, y, z of any numeric type; ``rgb``/``rgba`` packed in a FLOAT32 or
    UINT32 field). Organised clouds are flattened row-major. ``skip_nans`` drops points with a non-finite coordinate.
    """
    by_name = {f.name: f for f in msg.fields}
    for name in "xyz":
        if name not in by_name:
            raise ConversionError(f"PointCloud2.fields has no {name!r} field (fields: {list(by_name)})")
    endian = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.name in ("x", "y", "z", "rgb", "rgba"):
            if f.datatype not in _PF_DTYPES:
                raise ConversionError(f"PointCloud2.fields[{f.name}].datatype {f.datatype} is unknown")
            # a packed colour is read as its raw 32 bits whatever its declared type
            code = "u4" if f.name in ("rgb", "rgba") else _PF_DTYPES[f.datatype]
            names.append(f.name)
            formats.append(endian + code)
            offsets.append(f.offset)
    step = int(msg.point_step)
    n = int(msg.width) * int(msg.height)
    try:
        dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    except ValueError as e:
        raise ConversionError(f"PointCloud2.fields/point_step are inconsistent: {e}") from e
    row_step = int(msg.row_step)
    if row_step < step * int(msg.width):
        raise ConversionError(f"PointCloud2.row_step {row_step} < point_step*width = {step * int(msg.width)}")
    if len(msg.data) != row_step * int(msg.height):
        raise ConversionError(f"PointCloud2.data has {len(msg.data)} bytes but row_step*height = "
                              f"{row_step * int(msg.height)}")
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if row_step != step * int(msg.width):  # padded rows: drop the padding (one copy)
        raw = raw.reshape(int(msg.height), row_step)[:, :step * int(msg.width)].reshape(-1)
    rec = np.frombuffer(raw, dtype=dt, count=n)
    points = np.empty((n, 3), dtype=np.float32)
    points[:, 0], points[:, 1], points[:, 2] = rec["x"], rec["y"], rec["z"]
    colors = None
    cname = "rgb" if "rgb" in by_name else ("rgba" if "rgba" in by_name else None)
    if cname is not None:
        packed = rec[cname].astype(np.uint32)
        colors = np.empty((n, 3), dtype=np.uint8)
        colors[:, 0] = (packed >> 16) & 0xFF
        colors[:, 1] = (packed >> 8) & 0xFF
        colors[:, 2] = packed & 0xFF
    if skip_nans:
        keep = np.isfinite(points).all(axis=1)
        points = points[keep]
        colors = None if colors is None else colors[keep]
    return points, colors


# ---------------------------------------------------------------------------------------- scene graph
def _yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def _quaternion_yaw(q: Quaternion) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def box_pose(box: Box3D) -> Pose:
    c = box.center
    return Pose(position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])), orientation=_yaw_quaternion(box.yaw))


def scene_object_to_msg(obj: SceneObject) -> SceneObjectMsg:
    m = SceneObjectMsg(id=int(obj.id), kind=str(obj.kind), label=obj.label,
                       label_confidence=float(obj.label_confidence))
    m.label_candidates = [str(lab) for lab, _ in obj.label_candidates]
    m.label_candidate_scores = [float(s) for _, s in obj.label_candidates]
    m.attribute_keys = [str(k) for k in obj.attributes]
    m.attribute_values = [str(v) for v in obj.attributes.values()]
    m.bbox_center = box_pose(obj.box)
    s = obj.box.size
    m.bbox_size = Vector3(x=float(s[0]), y=float(s[1]), z=float(s[2]))
    cen = obj.box.center if obj.centroid is None else obj.centroid
    m.centroid = Point(x=float(cen[0]), y=float(cen[1]), z=float(cen[2]))
    if obj.mean_color is not None:
        r, g, b = (float(v) for v in np.clip(obj.mean_color, 0.0, 1.0))
        m.mean_color = ColorRGBA(r=r, g=g, b=b, a=1.0)
    m.point_count = int(obj.point_count)
    m.observation_count = int(obj.observation_count)
    m.first_seen = sec_to_stamp(max(obj.first_seen_s, 0.0))
    m.last_seen = sec_to_stamp(max(obj.last_seen_s, 0.0))
    if obj.embedding is not None:
        m.embedding = array.array("f", np.asarray(obj.embedding, dtype=np.float32).tobytes())
    return m


def scene_object_from_msg(m: SceneObjectMsg) -> SceneObject:
    if len(m.label_candidates) != len(m.label_candidate_scores):
        raise ConversionError("SceneObject.label_candidate_scores must have one score per label_candidates entry")
    if len(m.attribute_keys) != len(m.attribute_values):
        raise ConversionError("SceneObject.attribute_values must have one value per attribute_keys entry")
    p = m.bbox_center.position
    box = Box3D([p.x, p.y, p.z], [m.bbox_size.x, m.bbox_size.y, m.bbox_size.z], _quaternion_yaw(m.bbox_center.orientation))
    return SceneObject(
        id=int(m.id), kind=m.kind or "object", label=m.label, box=box, label_confidence=float(m.label_confidence),
        label_candidates=list(zip(m.label_candidates, (float(s) for s in m.label_candidate_scores))),
        attributes=dict(zip(m.attribute_keys, m.attribute_values)),
        centroid=np.array([m.centroid.x, m.centroid.y, m.centroid.z]),
        mean_color=np.array([m.mean_color.r, m.mean_color.g, m.mean_color.b]),
        point_count=int(m.point_count), observation_count=int(m.observation_count),
        first_seen_s=stamp_to_sec(m.first_seen), last_seen_s=stamp_to_sec(m.last_seen),
        embedding=np.frombuffer(m.embedding, dtype=np.float32).copy() if len(m.embedding) else None)


def relation_to_msg(r: SpatialRelation) -> SpatialRelationMsg:
    return SpatialRelationMsg(subject_id=int(r.subject_id), predicate=r.predicate, object_id=int(r.object_id),
                              confidence=float(r.confidence), reference_frame=r.reference_frame)


def relation_from_msg(m: SpatialRelationMsg) -> SpatialRelation:
    return SpatialRelation(int(m.subject_id), m.predicate, int(m.object_id), float(m.confidence), m.reference_frame)


def scene_graph_to_msg(graph: SceneGraph) -> SceneGraphMsg:
    m = SceneGraphMsg(sequence=int(graph.sequence))
    m.header = Header(frame_id=graph.frame_id, stamp=sec_to_stamp(max(graph.stamp_s, 0.0)))
    m.objects = [scene_object_to_msg(o) for o in graph.objects]
    m.relations = [relation_to_msg(r) for r in graph.relations]
    m.deleted_ids = [int(i) for i in graph.deleted_ids]
    return m


def scene_graph_from_msg(m: SceneGraphMsg) -> SceneGraph:
    return SceneGraph(objects=[scene_object_from_msg(o) for o in m.objects],
                      relations=[relation_from_msg(r) for r in m.relations], frame_id=m.header.frame_id,
                      stamp_s=stamp_to_sec(m.header.stamp), sequence=int(m.sequence),
                      deleted_ids=[int(i) for i in m.deleted_ids])


def pose_stamped(box: Box3D, frame_id: str, stamp_s: float) -> PoseStamped:
    return PoseStamped(header=Header(frame_id=frame_id, stamp=sec_to_stamp(max(stamp_s, 0.0))), pose=box_pose(box))


def matrix_to_pose(T: np.ndarray) -> Pose:
    """4x4 rigid transform -> geometry_msgs/Pose (quaternion from the rotation, scipy)."""
    from scipy.spatial.transform import Rotation

    T = np.asarray(T, dtype=np.float64)
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4; raises ConversionError for a zero or non-finite quaternion."""
    from scipy.spatial.transform import Rotation

    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w])
    n = np.linalg.norm(q)
    if not np.isfinite(q).all() or n < 1e-9:
        raise ConversionError(f"Pose.orientation must be a non-zero finite quaternion, got {q.tolist()}")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / n).as_matrix()
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    if not np.isfinite(T).all():
        raise ConversionError("Pose.position must be finite")
    return T


# ------------------------------------------------------------------------------------------------ query
def query_request_args(req) -> dict:
    """SpatialQuery request -> keyword arguments of g2vlm_core.language.query.QueryEngine.answer (raises ConversionError)."""
    args = {"max_results": int(req.max_results), "excluded_ids": [int(i) for i in req.excluded_ids]}
    if req.use_search_region:
        p = req.search_center.point
        args["search_center"] = np.array([p.x, p.y, p.z], dtype=np.float64)
        args["search_radius"] = float(req.search_radius)
    return args


def query_result_to_response(result, graph: SceneGraph, resp, stamp_s: float):
    """Fill a SpatialQuery response from a g2vlm_core.language.query.QueryResult; returns resp."""
    resp.success, resp.query_achievable = bool(result.success), bool(result.achievable)
    resp.answer, resp.error_message = result.answer, result.error
    resp.numeric_answer = float(result.numeric)
    resp.query_kind = str(result.kind)
    resp.confidence = float(min(max(result.confidence, 0.0), 1.0)) if np.isfinite(result.confidence) else 0.0
    resp.object_ids = [int(i) for i in result.object_ids]
    resp.scores = [float(s) for s in result.scores]
    by_id = {o.id: o for o in graph.objects}
    resp.objects = [scene_object_to_msg(by_id[i]) for i in result.object_ids if i in by_id]
    resp.supporting_relations = [relation_to_msg(r) for r in result.supporting]
    if result.achievable and result.object_ids and result.object_ids[0] in by_id:
        resp.target_pose = pose_stamped(by_id[result.object_ids[0]].box, graph.frame_id, stamp_s)
    return resp


def transform_to_matrix(transform) -> np.ndarray:
    """geometry_msgs/Transform (e.g. from a tf2 lookup) -> 4x4."""
    t, q = transform.translation, transform.rotation
    return pose_to_matrix(Pose(position=Point(x=t.x, y=t.y, z=t.z), orientation=Quaternion(x=q.x, y=q.y, z=q.z, w=q.w)))
