"""Ray-cast renderer of a layout (Open3D RaycastingScene): metric depth, shaded colour, ids and normals per pixel."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import open3d as o3d

from ..geometry.camera import CameraIntrinsics, pixel_rays
from .layout import Primitive

TEXTURE_CODE = {"plain": 0, "stripes": 1, "checker": 2}
TEXTURE_CONTRAST = 0.72  # second texture colour = albedo * this (same hue, so the colour name holds)
AMBIENT, KEY, HEADLIGHT = 0.35, 0.5, 0.25  # light weights: ambient + directional key light + camera headlight


@lru_cache(maxsize=None)
def _unit_mesh(shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangles (T, 3) int32 of a unit shape centred at the origin."""
    if shape == "box":
        m = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)
        m.translate((-0.5, -0.5, -0.5))
    elif shape == "cylinder":
        m = o3d.geometry.TriangleMesh.create_cylinder(0.5, 1.0, resolution=20, split=1)
    elif shape == "sphere":
        m = o3d.geometry.TriangleMesh.create_sphere(0.5, resolution=10)
    else:
        raise ValueError(f"unknown primitive shape {shape!r}")
    return np.asarray(m.vertices).copy(), np.asarray(m.triangles).astype(np.int32)


@dataclass
class SceneMesh:
    """All primitives merged: world vertices, triangles, per-vertex colour and per-triangle labels."""

    vertices: np.ndarray  # (V, 3) float64 world
    triangles: np.ndarray  # (T, 3) int32
    vertex_colors: np.ndarray  # (V, 3) float64 albedo
    tri_prim: np.ndarray  # (T,) int32 primitive index
    tri_instance: np.ndarray  # (T,) int32
    tri_semantic: np.ndarray  # (T,) int32

    def to_open3d(self) -> o3d.geometry.TriangleMesh:
        m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(self.vertices),
                                      o3d.utility.Vector3iVector(self.triangles))
        m.vertex_colors = o3d.utility.Vector3dVector(self.vertex_colors)
        return m


def build_mesh(primitives: list[Primitive]) -> SceneMesh:
    verts, tris, cols, tprim, tinst, tsem = [], [], [], [], [], []
    offset = 0
    for i, pr in enumerate(primitives):
        p = pr.part
        v, t = _unit_mesh(p.shape)
        wv = (v * p.size) @ p.R.T + p.center
        verts.append(wv)
        tris.append(t + offset)
        cols.append(np.broadcast_to(p.albedo, wv.shape))
        tprim.append(np.full(len(t), i, np.int32))
        tinst.append(np.full(len(t), pr.instance_id, np.int32))
        tsem.append(np.full(len(t), pr.semantic_id, np.int32))
        offset += len(v)
    return SceneMesh(np.concatenate(verts), np.concatenate(tris).astype(np.int32), np.concatenate(cols),
                     np.concatenate(tprim), np.concatenate(tinst), np.concatenate(tsem))


@dataclass
class RenderOutput:
    """Noise-free render of one view (all (H, W) unless noted)."""

    depth_m: np.ndarray  # float32 z-depth, 0 where no surface
    rgb: np.ndarray  # (H, W, 3) float32 shaded colour in [0, 1]
    instance_ids: np.ndarray  # int32, 0 = no surface
    semantic_ids: np.ndarray  # int32, 0 = void
    normals_cam: np.ndarray  # (H, W, 3) float32 unit normals facing the camera, optical frame; 0 = none
    albedo_lum: np.ndarray  # float32 surface albedo luminance (dark surfaces drop out of active depth sensors)
    cos_incidence: np.ndarray  # float32 |cos| of the angle between the view ray and the surface normal


class Renderer:
    """One RaycastingScene per scene; ray directions in the camera frame are built once and reused."""

    def __init__(self, mesh: SceneMesh, primitives: list[Primitive], intrinsics: CameraIntrinsics,
                 light_dir: np.ndarray) -> None:
        self.intrinsics = intrinsics
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                                 o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
        # Per-primitive tables gathered per pixel through the hit triangle's primitive. One extra "void"
        # entry at the end (index P, also the last triangle slot) stands for rays that hit nothing, so the
        # shading runs on whole images without masking or scattering.
        P = len(primitives)
        self.tri_prim = np.append(mesh.tri_prim, P).astype(np.int32)
        self.prim_albedo = np.array([p.part.albedo for p in primitives] + [[0, 0, 0]], np.float32)
        self._texture_tables(mesh, primitives)
        self.prim_instance = np.array([p.instance_id for p in primitives] + [0], np.int32)
        self.prim_semantic = np.array([p.semantic_id for p in primitives] + [0], np.int32)
        self.light_dir = np.asarray(light_dir, np.float32)
        self.prim_lum = self.prim_albedo @ np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601 luma
        # Unit-z rays: the hit parameter t is then the z-depth itself.
        self.dirs_cam = pixel_rays(intrinsics).reshape(-1, 3)
        self.inv_norm = (1.0 / np.linalg.norm(self.dirs_cam, axis=1)).astype(np.float32)
        self.rays = np.empty((len(self.dirs_cam), 6), np.float32)

    def _texture_tables(self, mesh: SceneMesh, primitives: list[Primitive]) -> None:
        """Per-triangle texture code and the two in-plane texture axes (world, scaled to stripe periods).

        The axes are the primitive's yaw-frame axes other than the one closest to the face normal, so a
        pixel's texture coordinates are two dot products (floor planks, vertical wallpaper stripes, tiles).
        """
        code = np.array([TEXTURE_CODE[p.part.texture] for p in primitives], np.int8)[mesh.tri_prim]
        inv_scale = np.array([1.0 / p.part.texture_scale_m for p in primitives])[mesh.tri_prim]
        yaw = np.array([np.arctan2(p.part.R[1, 0], p.part.R[0, 0]) for p in primitives])[mesh.tri_prim]
        c, s = np.cos(yaw), np.sin(yaw)
        zeros, ones = np.zeros_like(c), np.ones_like(c)
        axes = np.stack([np.stack([c, s, zeros], 1), np.stack([-s, c, zeros], 1),
                         np.stack([zeros, zeros, ones], 1)], 1)  # (T, 3 axes, 3)
        v = mesh.vertices[mesh.triangles]
        normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        dominant = np.argmax(np.abs(np.einsum("tij,tj->ti", axes, normal)), axis=1)
        first = np.where(dominant == 0, 1, 0)  # (x, y, z) without the dominant axis, in order
        second = np.where(dominant == 2, 1, 2)
        rows = np.arange(len(c))
        self.tri_tex = np.append(code, 0).astype(np.int8)
        self.tri_tex_a = np.append(axes[rows, first] * inv_scale[:, None], [[0, 0, 0]], 0).astype(np.float32)
        self.tri_tex_b = np.append(axes[rows, second] * inv_scale[:, None], [[0, 0, 0]], 0).astype(np.float32)

    def render(self, T_world_cam: np.ndarray) -> RenderOutput:
        H, W = self.intrinsics.shape
        R = np.asarray(T_world_cam[:3, :3], np.float32)
        origin = np.asarray(T_world_cam[:3, 3], np.float32)
        rays = self.rays
        rays[:, :3] = origin
        # dirs_world = R @ (u, v, 1), written per component: a (N, 3) @ (3, 3) BLAS call is slower here.
        u, v = self.dirs_cam[:, 0], self.dirs_cam[:, 1]
        for k in range(3):
            rays[:, 3 + k] = u * R[k, 0] + v * R[k, 1] + R[k, 2]
        dirs = rays[:, 3:]
        ans = self.scene.cast_rays(o3d.core.Tensor.from_numpy(rays))
        t = ans["t_hit"].numpy()
        hit = np.isfinite(t)
        # Misses report triangle id 0xFFFFFFFF: clamping sends them to the void slot without a mask.
        tri = np.minimum(ans["primitive_ids"].numpy(), np.uint32(len(self.tri_prim) - 1))
        prim = self.tri_prim[tri]
        n = ans["primitive_normals"].numpy()  # (N, 3) world; zero on a miss
        nx, ny, nz = n[:, 0], n[:, 1], n[:, 2]
        cos_dn = (nx * dirs[:, 0] + ny * dirs[:, 1] + nz * dirs[:, 2]) * self.inv_norm
        flip = np.where(cos_dn > 0, np.float32(-1), np.float32(1))  # face the camera (slabs seen from behind)
        nx, ny, nz = nx * flip, ny * flip, nz * flip
        abs_cos = np.abs(cos_dn)
        albedo = self.prim_albedo[prim]
        lum = self.prim_lum[prim]
        textured = np.nonzero(self.tri_tex[tri])[0]
        if len(textured):
            tt, tx = t[textured], tri[textured]
            p = origin + dirs[textured] * tt[:, None]
            ia = np.floor(np.einsum("ij,ij->i", p, self.tri_tex_a[tx])).astype(np.int32)
            ib = np.floor(np.einsum("ij,ij->i", p, self.tri_tex_b[tx])).astype(np.int32)
            odd = (np.where(self.tri_tex[tx] == 1, ia, ia + ib) & 1).astype(bool)
            dark = textured[odd]
            albedo[dark] *= np.float32(TEXTURE_CONTRAST)
            lum[dark] *= np.float32(TEXTURE_CONTRAST)
        L = self.light_dir
        shade = (np.float32(AMBIENT) + np.float32(KEY) * np.maximum(nx * L[0] + ny * L[1] + nz * L[2], 0)
                 + np.float32(HEADLIGHT) * abs_cos)  # after the flip every face looks at the camera
        rgb = albedo * shade[:, None]
        np.clip(rgb, 0.0, 1.0, out=rgb)

        depth = np.where(hit, t, np.float32(0.0))
        normals = np.empty((len(t), 3), np.float32)
        for k in range(3):  # world -> camera: n_cam = R^T n_world
            normals[:, k] = nx * R[0, k] + ny * R[1, k] + nz * R[2, k]
        return RenderOutput(depth.reshape(H, W), rgb.reshape(H, W, 3), self.prim_instance[prim].reshape(H, W),
                            self.prim_semantic[prim].reshape(H, W), normals.reshape(H, W, 3), lum.reshape(H, W),
                            abs_cos.reshape(H, W))
