"""Image / CameraInfo / PointCloud2 / SceneGraph conversions: round trips, padding, byte order, bad input."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from g2vlm_core.geometry.camera import CameraIntrinsics
from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject, SpatialRelation
from g2vlm_ros import conversions as cv

from .conftest import require_ros2_tool

RNG = np.random.default_rng(0)


def _random_image(encoding: str, h: int, w: int) -> np.ndarray:
    dtype, ch = cv.IMAGE_ENCODINGS[encoding]
    shape = (h, w) if ch == 1 else (h, w, ch)
    if dtype == np.float32:
        return RNG.uniform(0.1, 10.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _manual_image(arr: np.ndarray, encoding: str, step: int, big: bool) -> Image:
    """An Image built byte by byte, independently of numpy_to_image, with `step` padding filled with 0xAB."""
    h = arr.shape[0]
    raw = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(">" if big else "<"))).view(np.uint8).reshape(h, -1)
    rows = np.full((h, step), 0xAB, dtype=np.uint8)
    rows[:, :raw.shape[1]] = raw
    m = Image(height=h, width=arr.shape[1], encoding=encoding, is_bigendian=int(big), step=step)
    m.data = rows.tobytes()
    return m


@pytest.mark.parametrize("encoding", list(cv.IMAGE_ENCODINGS))
@pytest.mark.parametrize("width", [1, 7, 640])
@pytest.mark.parametrize("pad", [0, 3, 8])
@pytest.mark.parametrize("big", [False, True])
def test_image_round_trip_every_encoding(encoding, width, pad, big):
    arr = _random_image(encoding, 5, width)
    row = arr[0].nbytes
    # decoding a hand-built message with padding and either byte order gives back the array
    got = cv.image_to_numpy(_manual_image(arr, encoding, row + pad, big))
    assert got.dtype == arr.dtype and np.array_equal(got, arr)
    # encoding then decoding is the identity, and the padding/byte order is what was asked for
    msg = cv.numpy_to_image(arr, encoding, step=row + pad, is_bigendian=big)
    assert msg.step == row + pad and len(msg.data) == 5 * (row + pad) and msg.is_bigendian == int(big)
    assert np.array_equal(cv.image_to_numpy(msg), arr)


def test_unaligned_step_for_multibyte_pixels():
    arr = _random_image("32FC1", 4, 3)
    msg = _manual_image(arr, "32FC1", 3 * 4 + 1, big=False)  # rows start at odd byte offsets
    assert np.array_equal(cv.image_to_numpy(msg), arr)


@pytest.mark.parametrize("encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]), ("rgba8", [0, 1, 2]),
                                            ("bgra8", [2, 1, 0])])
def test_rgb_from_any_colour_encoding(encoding, order):
    arr = _random_image(encoding, 6, 9)
    rgb = cv.rgb_from_image(cv.numpy_to_image(arr, encoding))
    assert rgb.shape == (6, 9, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, arr[..., order])


def test_rgb_from_mono8_replicates_grey():
    arr = _random_image("mono8", 4, 5)
    rgb = cv.rgb_from_image(cv.numpy_to_image(arr, "mono8"))
    assert np.array_equal(rgb, np.stack([arr] * 3, axis=2))


def test_depth_units():
    mm = np.array([[0, 1, 1500], [65535, 250, 7]], dtype=np.uint16)
    d = cv.depth_from_image(cv.numpy_to_image(mm, "16UC1"))
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, mm.astype(np.float64) / 1000.0, rtol=1e-6)
    m = np.array([[0.5, np.nan], [np.inf, 3.25]], dtype=np.float32)
    got = cv.depth_from_image(cv.numpy_to_image(m, "32FC1", is_bigendian=True))
    assert np.array_equal(got, m, equal_nan=True)
    # 16UC1 encoding of metres: rounded millimetres, invalid -> 0
    back = cv.image_to_numpy(cv.depth_to_image(np.array([[1.2344, np.nan, -1.0, 70.0]], np.float32), "16UC1"))
    assert back.tolist() == [[1234, 0, 0, 0]]


def test_color_and_depth_encodings_are_not_mixed_up():
    with pytest.raises(cv.ConversionError, match="Image.encoding"):
        cv.depth_from_image(cv.numpy_to_image(_random_image("rgb8", 2, 2), "rgb8"))
    with pytest.raises(cv.ConversionError, match="Image.encoding"):
        cv.rgb_from_image(cv.numpy_to_image(_random_image("32FC1", 2, 2), "32FC1"))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "16UC1", "32FC1"])
@pytest.mark.parametrize("big", [False, True])
def test_image_decoding_agrees_with_rosbags_image(encoding, big):
    from rosbags.image import message_to_cvimage
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Img, Hdr, Time_ = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"], \
        ts.types["builtin_interfaces/msg/Time"]
    arr = _random_image(encoding, 4, 6)
    ours = _manual_image(arr, encoding, arr[0].nbytes, big)  # rosbags-image assumes step == row size
    theirs = Img(header=Hdr(stamp=Time_(sec=0, nanosec=0), frame_id="c"), height=ours.height, width=ours.width,
                 encoding=encoding, is_bigendian=int(big), step=ours.step,
                 data=np.frombuffer(ours.data, dtype=np.uint8).copy())
    assert np.array_equal(cv.image_to_numpy(ours), message_to_cvimage(theirs))
    if encoding in cv.COLOR_ENCODINGS and encoding != "mono8":
        assert np.array_equal(cv.rgb_from_image(ours), message_to_cvimage(theirs, "rgb8"))


@pytest.mark.skipif(importlib.util.find_spec("cv_bridge") is None, reason="cv_bridge needs a ROS 2 distro")
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "16UC1", "32FC1"])
def test_agrees_with_cv_bridge(encoding):
    from cv_bridge import CvBridge

    arr = _random_image(encoding, 5, 7)
    msg = cv.numpy_to_image(arr, encoding, step=arr[0].nbytes + 4)
    assert np.array_equal(CvBridge().imgmsg_to_cv2(msg), cv.image_to_numpy(msg))
    assert np.array_equal(cv.image_to_numpy(CvBridge().cv2_to_imgmsg(arr, encoding)), arr)


@pytest.mark.parametrize("field,make,match", [
    ("data", lambda m: setattr(m, "data", bytes(len(m.data) - 1)), "Image.data"),
    ("step", lambda m: setattr(m, "step", 2), "Image.step"),
    ("encoding", lambda m: setattr(m, "encoding", "yuv422"), "Image.encoding"),
    ("height", lambda m: setattr(m, "height", 0), "Image.height"),
])
def test_bad_images_raise_one_clear_error(field, make, match):
    msg = cv.numpy_to_image(_random_image("rgb8", 3, 4), "rgb8")
    make(msg)
    with pytest.raises(cv.ConversionError, match=match):
        cv.image_to_numpy(msg)


def test_numpy_to_image_rejects_wrong_dtype_or_channels():
    with pytest.raises(cv.ConversionError, match="Image.encoding"):
        cv.numpy_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(cv.ConversionError, match="Image.encoding"):
        cv.numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")


# ------------------------------------------------------------------------------------------ CameraInfo
def _camera_info(w=640, h=480, fx=525.0, fy=520.0, cx=319.5, cy=239.5) -> CameraInfo:
    m = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    m.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    m.d = [0.1, -0.2, 0.001, 0.002, 0.0]
    return m


def test_camera_info_to_intrinsics_and_back():
    intr = cv.camera_info_to_intrinsics(_camera_info(), image_shape=(480, 640))
    assert (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy) == (640, 480, 525.0, 520.0, 319.5, 239.5)
    assert intr.distortion_model == "plumb_bob" and intr.distortion == (0.1, -0.2, 0.001, 0.002, 0.0)
    again = cv.camera_info_to_intrinsics(cv.intrinsics_to_camera_info(intr))
    assert again == intr
    np.testing.assert_allclose(np.asarray(cv.intrinsics_to_camera_info(intr).p).reshape(3, 4)[:, :3], intr.K)


def test_camera_info_binning_and_roi():
    m = _camera_info()
    m.binning_x = m.binning_y = 2
    intr = cv.camera_info_to_intrinsics(m)
    assert (intr.width, intr.height, intr.fx, intr.cx) == (320, 240, 262.5, 159.75)
    m = _camera_info()
    m.roi.x_offset, m.roi.y_offset, m.roi.width, m.roi.height = 100, 50, 200, 100
    intr = cv.camera_info_to_intrinsics(m)
    assert (intr.width, intr.height, intr.cx, intr.cy) == (200, 100, 219.5, 189.5)


@pytest.mark.parametrize("kw,match", [({"fx": 0.0}, "CameraInfo.k"), ({"fy": -1.0}, "CameraInfo.k"),
                                      ({"fx": math.nan}, "CameraInfo.k"), ({"w": 0}, "CameraInfo.width")])
def test_bad_camera_info(kw, match):
    with pytest.raises(cv.ConversionError, match=match):
        cv.camera_info_to_intrinsics(_camera_info(**kw))


def test_camera_info_size_disagreeing_with_image():
    with pytest.raises(cv.ConversionError, match="CameraInfo.width/height 640x480 disagree with the image 320x240"):
        cv.camera_info_to_intrinsics(_camera_info(), image_shape=(240, 320))


# ------------------------------------------------------------------------------------------ PointCloud2
finite_f32 = st.floats(-1e6, 1e6, width=32, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(points=hnp.arrays(np.float32, st.tuples(st.integers(0, 300), st.just(3)), elements=finite_f32),
       data=st.data())
def test_pointcloud2_round_trip_property(points, data):
    colors = data.draw(hnp.arrays(np.uint8, (points.shape[0], 3)))
    pts, cols = cv.pointcloud2_to_xyz(cv.xyz_to_pointcloud2(points, colors))
    assert np.array_equal(pts, points) and np.array_equal(cols, colors)
    pts, cols = cv.pointcloud2_to_xyz(cv.xyz_to_pointcloud2(points))
    assert np.array_equal(pts, points) and cols is None


@settings(max_examples=40, deadline=None)
@given(points=hnp.arrays(np.float32, st.tuples(st.integers(1, 100), st.just(3)),
                         elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_pointcloud2_keeps_or_skips_non_finite(points):
    msg = cv.xyz_to_pointcloud2(points)
    assert msg.is_dense == bool(np.isfinite(points).all())
    pts, _ = cv.pointcloud2_to_xyz(msg)
    assert np.array_equal(pts, points, equal_nan=True)
    kept, _ = cv.pointcloud2_to_xyz(msg, skip_nans=True)
    assert np.array_equal(kept, points[np.isfinite(points).all(axis=1)])


def test_pointcloud2_rgb_layout_is_what_rviz_reads():
    msg = cv.xyz_to_pointcloud2(np.zeros((1, 3), np.float32), np.array([[0x12, 0x34, 0x56]], np.uint8))
    f = {p.name: p for p in msg.fields}
    assert f["rgb"].datatype == PointField.FLOAT32 and f["rgb"].offset == 12 and msg.point_step == 16
    packed = np.frombuffer(msg.data, dtype="<u4")[3]
    assert packed == 0x00123456
    # float colours in [0, 1] map to the same bytes
    msg2 = cv.xyz_to_pointcloud2(np.zeros((1, 3), np.float32), np.array([[0x12, 0x34, 0x56]]) / 255.0)
    assert bytes(msg2.data) == bytes(msg.data)


def test_pointcloud2_foreign_layout_big_endian_float64_organised_padded():
    """A cloud laid out unlike ours (float64, big-endian, extra field, organised 2x3 with row padding)."""
    h, w = 2, 3
    pts = RNG.normal(size=(h * w, 3))
    cols = RNG.integers(0, 256, (h * w, 3)).astype(np.uint32)
    dt = np.dtype({"names": ["intensity", "x", "y", "z", "rgba"], "formats": [">f4", ">f8", ">f8", ">f8", ">u4"],
                   "offsets": [0, 4, 12, 20, 28], "itemsize": 36})
    rec = np.zeros(h * w, dtype=dt)
    rec["x"], rec["y"], rec["z"] = pts.T
    rec["rgba"] = (0xFF << 24) | (cols[:, 0] << 16) | (cols[:, 1] << 8) | cols[:, 2]
    rows = np.zeros((h, w * 36 + 4), np.uint8)
    rows[:, :w * 36] = rec.view(np.uint8).reshape(h, w * 36)
    msg = PointCloud2(height=h, width=w, point_step=36, row_step=w * 36 + 4, is_bigendian=True, is_dense=True)
    msg.fields = [PointField(name="intensity", offset=0, datatype=PointField.FLOAT32, count=1)] + [
        PointField(name=n, offset=o, datatype=PointField.FLOAT64, count=1) for n, o in (("x", 4), ("y", 12), ("z", 20))
    ] + [PointField(name="rgba", offset=28, datatype=PointField.UINT32, count=1)]
    msg.data = rows.tobytes()
    got_pts, got_cols = cv.pointcloud2_to_xyz(msg)
    np.testing.assert_allclose(got_pts, pts.astype(np.float32))
    assert np.array_equal(got_cols, cols.astype(np.uint8))


@pytest.mark.parametrize("breakit,match", [
    (lambda m: setattr(m, "fields", [f for f in m.fields if f.name != "y"]), "PointCloud2.fields"),
    (lambda m: setattr(m, "data", bytes(len(m.data) - 4)), "PointCloud2.data"),
    (lambda m: setattr(m, "row_step", 4), "PointCloud2.row_step"),
])
def test_bad_pointcloud2(breakit, match):
    msg = cv.xyz_to_pointcloud2(np.ones((4, 3), np.float32), np.zeros((4, 3), np.uint8))
    breakit(msg)
    with pytest.raises(cv.ConversionError, match=match):
        cv.pointcloud2_to_xyz(msg)


def test_xyz_to_pointcloud2_rejects_bad_shapes():
    with pytest.raises(cv.ConversionError, match="points must be"):
        cv.xyz_to_pointcloud2(np.zeros((4, 2)))
    with pytest.raises(cv.ConversionError, match="colors must be"):
        cv.xyz_to_pointcloud2(np.zeros((4, 3)), np.zeros((3, 3)))


def test_agrees_with_sensor_msgs_py():
    """Hand-made clouds; tests/ros/test_ros2_launch.py compares the node's real `cloud` output too."""
    require_ros2_tool("sensor_msgs_py")
    from sensor_msgs_py import point_cloud2 as pc2

    pts = RNG.normal(size=(50, 3)).astype(np.float32)
    msg = cv.xyz_to_pointcloud2(pts, RNG.integers(0, 256, (50, 3)).astype(np.uint8))
    theirs = pc2.read_points_numpy(msg, field_names=("x", "y", "z"))
    assert np.array_equal(theirs, cv.pointcloud2_to_xyz(msg)[0])
    back = cv.pointcloud2_to_xyz(pc2.create_cloud_xyz32(msg.header, pts))[0]
    assert np.array_equal(back, pts)


# ------------------------------------------------------------------------------------------ scene graph
def test_scene_graph_round_trip():
    objs = [SceneObject(id=7, label="mug", box=Box3D([1.0, 2.0, 0.8], [0.1, 0.1, 0.12], 0.3),
                        label_confidence=0.8, label_candidates=[("mug", 0.8), ("bottle", 0.1)],
                        attributes={"color": "red", "size": "small"}, centroid=np.array([1.0, 2.0, 0.79]),
                        mean_color=np.array([0.8, 0.1, 0.1]), point_count=420, observation_count=5,
                        first_seen_s=12.5, last_seen_s=20.25, embedding=np.arange(4, dtype=np.float32) / 4),
            SceneObject(id=9, label="counter", box=Box3D([1.0, 2.0, 0.37], [1.2, 0.8, 0.74]), kind="structure")]
    rels = [SpatialRelation(7, "on", 9, 0.97), SpatialRelation(7, "left_of", 9, 0.6, "camera")]
    g = SceneGraph(objects=objs, relations=rels, frame_id="map", stamp_s=100.5, sequence=3, deleted_ids=[2, 4])
    back = cv.scene_graph_from_msg(cv.scene_graph_to_msg(g))
    assert (back.frame_id, back.sequence, back.deleted_ids) == ("map", 3, [2, 4])
    assert back.stamp_s == pytest.approx(100.5)
    a, b = back.objects[0], g.objects[0]
    assert (a.id, a.label, a.attributes, a.point_count, a.observation_count) == (7, "mug", b.attributes, 420, 5)
    assert [lab for lab, _ in a.label_candidates] == ["mug", "bottle"]
    np.testing.assert_allclose(a.box.center, b.box.center)
    np.testing.assert_allclose(a.box.size, b.box.size)
    assert a.box.yaw == pytest.approx(0.3)
    np.testing.assert_allclose(a.embedding, b.embedding)
    assert a.first_seen_s == pytest.approx(12.5) and a.last_seen_s == pytest.approx(20.25)
    assert back.objects[1].embedding is None
    assert [o.kind for o in back.objects] == ["object", "structure"]
    assert SceneGraph.from_dict(g.to_dict()).objects[1].kind == "structure"
    assert [(r.subject_id, r.predicate, r.object_id, r.reference_frame) for r in back.relations] == \
        [(7, "on", 9, ""), (7, "left_of", 9, "camera")]
    assert back.relations[1].confidence == pytest.approx(0.6)


def test_pose_matrix_round_trip_and_bad_quaternion():
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [0.3, -0.2, 1.1]).as_matrix()
    T[:3, 3] = [1.0, -2.0, 0.5]
    np.testing.assert_allclose(cv.pose_to_matrix(cv.matrix_to_pose(T)), T, atol=1e-12)
    bad = cv.matrix_to_pose(T)
    bad.orientation.x = bad.orientation.y = bad.orientation.z = bad.orientation.w = 0.0
    with pytest.raises(cv.ConversionError, match="Pose.orientation"):
        cv.pose_to_matrix(bad)


def test_intrinsics_type_is_the_core_one():
    assert isinstance(cv.camera_info_to_intrinsics(_camera_info()), CameraIntrinsics)
