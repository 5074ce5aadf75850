"""Run the evaluation study: every runnable variant on the synthetic split, the real-data rows, CIs and paired tests."""
from __future__ import annotations

import dataclasses
import logging
import platform
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..datasets import open_dataset
from ..predicates import Viewpoint
from ..scene_graph import SceneGraph, SceneObject, SpatialRelation
from .config import StudyConfig, VariantSpec
from .reconstruction import ReconstructionResult, evaluate_reconstruction, track_sequence
from .scene_graph import evaluate_scene_graph
from .stats import bootstrap_ci, compare_paired, holm_correction
from .variants import ModelUnavailableError, VariantRunner, geometry_runner, oracle_runner, train_learned_variant

log = logging.getLogger(__name__)

# Metrics of one scene, grouped as the report's tables; "lower" marks those where smaller is better.
RECONSTRUCTION_METRICS = ("chamfer_m", "fscore_5cm", "mesh_iou", "mesh_iou_full", "occupancy_iou",
                          "consistency_median_m")
SCENE_GRAPH_METRICS = ("matched@0.25", "matched@0.5", "predicate_accuracy", "triplet_recall")
REASONING_METRICS = ("acc@0.25", "acc@0.5", "r@1", "r@5")
QUERY_METRICS = REASONING_METRICS
RUNTIME_METRICS = ("pipeline_ms_per_frame", "fusion_ms_per_frame", "keyframe_ms")
LOWER_IS_BETTER = {"chamfer_m", "consistency_median_m", "consistency_mean_m", "ate_rmse_m",
                   "pipeline_ms_per_frame", "fusion_ms_per_frame", "keyframe_ms"}
TESTED_METRICS = RECONSTRUCTION_METRICS + SCENE_GRAPH_METRICS + REASONING_METRICS


@dataclass
class SyntheticScene:
    """One rendered synthetic scene with the GT the metrics need (held only while it is evaluated)."""

    name: str
    seed: int
    frames: list
    poses: np.ndarray  # (N, 4, 4) GT T_world_cam
    gt_mesh: object  # open3d legacy TriangleMesh
    objects: list[SceneObject]
    relations: list[SpatialRelation]
    expressions: list
    viewpoints: dict[str, Viewpoint]


@dataclass
class VariantOutcome:
    """What happened to one variant: per-seed per-scene results, or why it did not run."""

    spec: VariantSpec
    status: str = "ok"  # "ok" | "not run"
    reason: str = ""
    seeds: list = field(default_factory=list)
    scenes: dict = field(default_factory=dict)  # seed key -> scene name -> {"metrics", "queries", "runtime"}


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def synthetic_seeds(study: StudyConfig) -> list[int]:
    from ..synth import SynthConfig

    s = study.synthetic
    if s.num_scenes == 0:
        return []
    return SynthConfig(num_scenes=s.num_scenes, seed=s.first_seed, split=s.split).scene_seeds()


def prepare_scene(generator, seed: int) -> SyntheticScene:
    """Render every frame of one scene and build its GT record in memory (what the dataset writer stores)."""
    from ..synth.generator import visible_object_ids
    from ..synth.records import ReferringExpression

    scene = generator.scene(seed)
    frames = [scene.render_frame(i) for i in range(len(scene.poses))]
    record = scene.record({i: visible_object_ids(f.extras["instance_ids"]) for i, f in enumerate(frames)})
    views = {v["frame_id"]: Viewpoint(np.asarray(v["position"]), np.asarray(v["forward"]), v["frame_id"])
             for v in record["reference_views"]}
    return SyntheticScene(scene.name, seed, frames, scene.poses.copy(), scene.mesh.to_open3d(),
                          [SceneObject.from_dict(o) for o in record["objects"]],
                          [SpatialRelation.from_dict(r) for r in record["relations"]],
                          [ReferringExpression.from_dict(e) for e in record["expressions"]], views)


def evaluate_runner_on_scene(runner: VariantRunner, scene: SyntheticScene, study: StudyConfig
                             ) -> tuple[dict, ReconstructionResult | None]:
    """Run one variant over one scene's frames; returns its record and (for figures) the reconstruction."""
    recon = None
    runtime: dict[str, float] = {}
    metrics: dict[str, float] = {}
    if runner.make_pipeline is None:
        graph = SceneGraph(objects=list(scene.objects))
    else:
        pipe = runner.make_pipeline()
        totals, fusion_ms, key_ms = [], [], []
        for f in scene.frames:
            t0 = time.perf_counter()
            rep = pipe.process(f)
            totals.append((time.perf_counter() - t0) * 1e3)
            if rep.fused:
                fusion_ms.append(rep.timings_ms.get("fusion", np.nan))
            if rep.keyframe:
                key_ms.append(rep.timings_ms.get("segmentation", 0.0) + rep.timings_ms.get("object_map", 0.0))
        runtime = {"pipeline_ms_per_frame": float(np.mean(totals)),
                   "fusion_ms_per_frame": float(np.mean(fusion_ms)) if fusion_ms else float("nan"),
                   "keyframe_ms": float(np.mean(key_ms)) if key_ms else float("nan"),
                   "frames_fused": float(pipe.frames_fused), "keyframes": float(pipe.keyframes)}
        rc = dataclasses.replace(study.reconstruction, run_tracker=False)
        recon = evaluate_reconstruction(scene.frames, scene.name, rc, gt_mesh=scene.gt_mesh, fusion=pipe.fusion,
                                        fuse_ms=runtime["fusion_ms_per_frame"])
        metrics.update(recon.metrics())
        graph = pipe.snapshot()
    sg = evaluate_scene_graph(scene.name, graph, scene.objects, scene.relations, scene.viewpoints,
                              scene.expressions, study.scene_graph, runner.engine)
    metrics.update(sg.metrics())
    metrics.update(runtime)
    record = {"metrics": metrics, "n_gt_objects": sg.n_gt, "n_pred_objects": sg.n_pred,
              "n_gt_triplets": sg.n_gt_triplets, "queries": [dataclasses.asdict(q) for q in sg.queries]}
    return record, recon


def build_runners(study: StudyConfig, skip_learned: bool = False) -> tuple[dict, list[tuple[VariantRunner, str]]]:
    """Outcome per variant and the runnable (runner, seed key) list; learned variants that cannot run are
    recorded as "not run" with the reason their check gave (never estimated)."""
    outcomes, runners = {}, []
    for spec in study.variants:
        out = VariantOutcome(spec)
        outcomes[spec.name] = out
        if spec.kind == "geometry":
            runners.append((geometry_runner(spec, study), "-"))
            out.seeds = ["-"]
        elif spec.kind == "oracle":
            runners.append((oracle_runner(spec, study), "-"))
            out.seeds = ["-"]
        elif skip_learned:
            out.status, out.reason = "not run", "learned variants skipped (--skip-learned)"
        else:
            seeds = [0] if spec.checkpoint else list(study.seeds)
            reasons = []
            for seed in seeds:
                try:
                    runners.append((train_learned_variant(spec, seed, study), str(seed)))
                    out.seeds.append(str(seed))
                except ModelUnavailableError as e:
                    reasons.append(str(e))
                    log.warning("variant %s seed %s not run: %s", spec.name, seed, e)
                    # the same missing piece fails every seed: stop at the first
                    break
            if not out.seeds:
                out.status, out.reason = "not run", reasons[0] if reasons else "no seeds"
            elif reasons:  # some seeds ran: keep the row, say why the others are missing
                out.reason = f"seeds after {out.seeds[-1]} not run: {reasons[0]}"
    return outcomes, runners


def run_synthetic(study: StudyConfig, outcomes: dict, runners: list, progress: bool = True) -> dict:
    """Evaluate every runnable variant on every scene of the split (each scene rendered once)."""
    from ..synth import SceneGenerator, SynthConfig

    s = study.synthetic
    seeds = synthetic_seeds(study)
    figures: dict = {}
    tracking: dict = {}
    if not seeds or not runners:
        return {"scenes": [], "tracking": tracking, "figure_clouds": figures}
    gen = SceneGenerator(SynthConfig(num_scenes=len(seeds), frames_per_scene=s.frames_per_scene, width=s.width,
                                     height=s.height, noise=s.noise, seed=s.first_seed, split=s.split))
    names = []
    for seed in tqdm(seeds, desc="synthetic scenes", unit="scene", disable=not progress):
        scene = prepare_scene(gen, seed)
        names.append(scene.name)
        if study.reconstruction.run_tracker:
            tr = track_sequence(scene.frames, scene.poses)
            tracking[scene.name] = dataclasses.asdict(tr)
        for runner, key in runners:
            record, recon = evaluate_runner_on_scene(runner, scene, study)
            outcomes[runner.variant].scenes.setdefault(key, {})[scene.name] = record
            if recon is not None and runner.variant not in figures:
                figures[runner.variant] = recon  # first scene of each pipeline variant, for the error figure
        del scene
    return {"scenes": names, "tracking": tracking, "figure_clouds": figures}


def run_real(study: StudyConfig, progress: bool = True) -> tuple[list[dict], dict]:
    """Reconstruction / consistency / ATE rows of the real datasets (few frames: no GT surface)."""
    rows, clouds = [], {}
    for path in tqdm(study.real.datasets, desc="real datasets", unit="dataset", disable=not progress):
        root = study.resolve(path)
        ds = open_dataset(root)
        n = len(ds) if study.real.max_frames <= 0 else min(len(ds), study.real.max_frames)
        frames = [ds[i] for i in range(n)]
        res = evaluate_reconstruction(frames, root.name, study.reconstruction, gt_poses=ds.gt_poses()[:n])
        b = study.bootstrap
        per_frame = [c.median_m for c in res.consistency]
        row = res.to_dict()
        row.update({"path": str(path), "layout": type(ds).__name__,
                    "consistency_median_ci": bootstrap_ci(per_frame, np.mean, b.n_resamples, b.confidence, b.method,
                                                          b.seed).to_dict()})
        rows.append(row)
        clouds[root.name] = res
    return rows, clouds


def run_real_recognition(study: StudyConfig, progress: bool = True) -> list[dict]:
    """Recognition rows on the annotated real frames, one per backend (eval.real_recognition); a backend that
    cannot be built here (its extra missing) is reported as not run with the reason."""
    from ..recognition.base import RecognizerError
    from .real_recognition import evaluate_backend

    folder = study.resolve(study.real.annotations)
    if not (folder / "annotations.json").is_file():
        return []
    out = []
    for backend in study.real.recognizers:
        try:
            out.append(evaluate_backend(backend, folder, progress=progress))
        except (RecognizerError, ImportError, ValueError, FileNotFoundError) as e:
            out.append({"backend": backend, "status": "not run", "reason": str(e)})
    return out


def _unit_values(outcome: VariantOutcome, metric: str, scenes: list[str], unit: str) -> np.ndarray:
    """Values of one metric per resampling unit, averaged over the variant's seeds (NaN where missing)."""
    per_seed = []
    for key in outcome.seeds:
        recs = outcome.scenes.get(key, {})
        if unit == "query" and metric in QUERY_METRICS:
            vals = [q["hits"].get(metric, np.nan) for s in scenes for q in recs.get(s, {}).get("queries", [])]
        else:
            vals = [recs.get(s, {}).get("metrics", {}).get(metric, np.nan) for s in scenes]
        per_seed.append(vals)
    if not per_seed or not per_seed[0]:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (metric undefined for a unit) stay NaN
        return np.nanmean(np.asarray(per_seed, dtype=np.float64), axis=0)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def summarize(study: StudyConfig, outcomes: dict, scenes: list[str]) -> dict:
    """Per variant and metric: mean with bootstrap CI over units, seed spread, paired test vs the reference."""
    b = study.bootstrap
    metrics = TESTED_METRICS + RUNTIME_METRICS + ("mean_matched_iou", "triplet_recall_matched", "precision",
                                                  "recall", "consistency_mean_m")
    summary: dict = {}
    ref = outcomes.get(study.reference_variant)
    for name, out in outcomes.items():
        if out.status != "ok":
            continue
        summary[name] = {}
        for m in metrics:
            vals = _unit_values(out, m, scenes, b.unit)
            if len(vals) == 0 or not np.isfinite(vals).any():
                continue
            ci = bootstrap_ci(vals, np.mean, b.n_resamples, b.confidence, b.method, b.seed).to_dict()
            seed_means = [_nanmean(_unit_values(dataclasses.replace(out, seeds=[k]), m, scenes, b.unit))
                          for k in out.seeds]
            ci["seed_sd"] = float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else float("nan")
            ci["n_seeds"] = len(out.seeds)
            ci["values"] = [None if not np.isfinite(v) else float(v) for v in vals]
            entry = {"ci": ci}
            if ref is not None and ref.status == "ok" and name != study.reference_variant and m in TESTED_METRICS:
                rv = _unit_values(ref, m, scenes, b.unit)
                if len(rv) == len(vals):
                    t = compare_paired(vals, rv, b.test, b.test_resamples, b.seed)
                    entry["test"] = t.to_dict()
            summary[name][m] = entry
    if b.holm:
        for m in TESTED_METRICS:
            names = [n for n in summary if "test" in summary[n].get(m, {})]
            adj = holm_correction([summary[n][m]["test"]["p_value"] for n in names])
            for n, p in zip(names, adj):
                summary[n][m]["test"]["p_holm"] = float(p)
    return summary


def run_study(study: StudyConfig, skip_learned: bool = False, only: str = "all", progress: bool = True) -> dict:
    """Everything the report needs: per-unit values, CIs, tests, real rows, runtime and provenance."""
    t0 = time.time()
    if only == "real":
        # nothing is trained or checked when no variant would be evaluated
        outcomes = {v.name: VariantOutcome(v, "not run", "synthetic split not evaluated in this run (--only real)")
                    for v in study.variants}
        runners: list = []
    else:
        outcomes, runners = build_runners(study, skip_learned)
    synth = {"scenes": [], "tracking": {}, "figure_clouds": {}}
    if only in ("all", "synthetic"):
        synth = run_synthetic(study, outcomes, runners, progress)
    real_rows, real_clouds, recognition = ([], {}, [])
    if only in ("all", "real"):
        real_rows, real_clouds = run_real(study, progress)
        recognition = run_real_recognition(study, progress)
    summary = summarize(study, outcomes, synth["scenes"])
    tracking = synth["tracking"]
    b = study.bootstrap
    ate = [t["ate_rmse_m"] for t in tracking.values()]
    import open3d
    import scipy

    return {
        "meta": {"config": study.source, "config_fingerprint": study.fingerprint(),
                 "git_commit": git_commit(study.resolve(".")),
                 "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "wall_s": time.time() - t0,
                 "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                 "open3d": open3d.__version__, "machine": platform.machine(), "only": only,
                 "skip_learned": skip_learned},
        "config": study.to_dict(),
        "scenes": synth["scenes"],
        "variants": {n: {"kind": o.spec.kind, "description": o.spec.description, "status": o.status,
                         "reason": o.reason, "seeds": o.seeds, "overrides": o.spec.overrides, "per_seed": o.scenes}
                     for n, o in outcomes.items()},
        "summary": summary,
        "tracking": {"per_scene": tracking,
                     "ate_rmse_ci": bootstrap_ci(ate, np.mean, b.n_resamples, b.confidence, b.method,
                                                 b.seed).to_dict() if ate else None,
                     "tracked_fraction_mean": float(np.mean([t["n_tracked"] / max(t["n_frames"], 1)
                                                            for t in tracking.values()])) if tracking else None},
        "real": real_rows,
        "recognition": recognition,
        "_clouds": {"synthetic": synth["figure_clouds"], "real": real_clouds},  # not serialised: figures only
    }
