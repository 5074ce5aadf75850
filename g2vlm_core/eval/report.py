"""Write the study's results as a markdown report, a JSON file with every number and matplotlib figures."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from .study import (LOWER_IS_BETTER, REASONING_METRICS, RECONSTRUCTION_METRICS, RUNTIME_METRICS,
                    SCENE_GRAPH_METRICS)

log = logging.getLogger(__name__)

REPORT_NAME, JSON_NAME = "report.md", "results.json"
LABELS = {"chamfer_m": "Chamfer (m)", "fscore_5cm": "F-score@5cm", "mesh_iou": "mesh IoU (observed)",
          "mesh_iou_full": "mesh IoU (full GT)", "occupancy_iou": "occupancy IoU",
          "consistency_median_m": "depth consistency median (m)", "matched@0.25": "GT matched@0.25",
          "matched@0.5": "GT matched@0.5", "predicate_accuracy": "predicate accuracy",
          "triplet_recall": "triplet recall", "acc@0.25": "Acc@0.25", "acc@0.5": "Acc@0.5", "r@1": "R@1",
          "r@5": "R@5", "pipeline_ms_per_frame": "pipeline ms/frame", "fusion_ms_per_frame": "fusion ms/frame",
          "keyframe_ms": "segmentation+object map ms/keyframe"}
FIGURE_METRICS = ("chamfer_m", "fscore_5cm", "mesh_iou", "occupancy_iou", "matched@0.25", "predicate_accuracy",
                  "triplet_recall", "acc@0.25", "acc@0.5", "r@1", "r@5")


def _jsonable(obj):
    """Plain JSON types; non-finite floats become null (JSON has no NaN) so every reader accepts the file."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) < 0.01 and x != 0:
        return f"{x:.4f}"
    return f"{x:.{digits}f}"


def _fmt_p(p) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _cell(entry: dict | None, with_test: bool) -> str:
    if not entry:
        return "n/a"
    ci = entry["ci"]
    s = f"{_fmt(ci['estimate'])} [{_fmt(ci['low'])}, {_fmt(ci['high'])}]"
    t = entry.get("test")
    if with_test and t is not None:
        s += f"; p={_fmt_p(t.get('p_holm', t['p_value']))}"
    return s


def _metric_table(results: dict, metrics: tuple[str, ...], with_test: bool = True) -> list[str]:
    summary = results["summary"]
    head = "| variant | " + " | ".join(LABELS.get(m, m) + (" (lower better)" if m in LOWER_IS_BETTER else "")
                                       for m in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 1)]
    for name, v in results["variants"].items():
        if v["status"] != "ok":
            lines.append(f"| {name} | " + " | ".join(["not run"] * len(metrics)) + " |")
            continue
        lines.append(f"| {name} | " + " | ".join(_cell(summary.get(name, {}).get(m), with_test)
                                                 for m in metrics) + " |")
    return lines


def _real_table(results: dict) -> list[str]:
    lines = ["| dataset | frames fused | depth consistency median (m), mean over frames [95% CI] | "
             "consistency mean (m) | odometry ATE RMSE (m) | frames tracked | fusion ms/frame |",
             "|---|---|---|---|---|---|---|"]
    for r in results["real"]:
        m, ci, tr = r["metrics"], r["consistency_median_ci"], r.get("tracking") or {}
        fails = ", ".join(f"{k}: {v}" for k, v in tr.get("failures", {}).items())
        tracked = f"{tr.get('n_tracked', 'n/a')}/{tr.get('n_frames', 'n/a')}" + (f" ({fails})" if fails else "")
        lines.append(f"| {r['name']} | {r['n_fused']}/{r['n_frames']} | {_fmt(ci['estimate'])} "
                     f"[{_fmt(ci['low'])}, {_fmt(ci['high'])}] | {_fmt(m['consistency_mean_m'])} | "
                     f"{_fmt(m.get('ate_rmse_m'))} | {tracked} | {_fmt(m['fuse_ms_per_frame'], 1)} |")
    lines += ["", "Per frame (distance of the frame's back-projected depth, at its GT pose, to the fused mesh):", "",
              "| dataset | frame | median (m) | mean (m) | p90 (m) | points |", "|---|---|---|---|---|---|"]
    for r in results["real"]:
        for f in r["frames"]:
            lines.append(f"| {r['name']} | {f['index']} | {_fmt(f['median_m'])} | {_fmt(f['mean_m'])} | "
                         f"{_fmt(f['p90_m'])} | {f['n_points']} |")
    return lines


def _recognition_table(results: dict) -> list[str]:
    """Per backend and annotated sequence: 2D detection, and for posed sequences the fused map's objects."""
    lines = ["Recognition on the hand-made annotations of the real frames (`python -m g2vlm_core.eval.real_recognition"
             " --backend NAME`; its docstring defines every column): 2D recall / precision at IoU >= 0.5 with the "
             "right category per frame; for posed sequences the share of annotated instances of categories the "
             "backend covers found in the fused map (box contains the centroid within 0.15 m, label matches), map "
             "objects whose label names nothing annotated, map objects at no annotated instance, and map objects "
             "per annotated instance.", "",
             "| backend | sequence | 2D recall | 2D precision | ms / frame | found in map | wrong label | unmatched "
             "| objects / instance |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results.get("recognition", []):
        if r.get("status") == "not run":
            lines.append(f"| {r['backend']} | not run: {r['reason']} | | | | | | | |")
            continue
        for name, s in r["sequences"].items():
            d, m = s["detection"], s.get("map")
            cells = [_fmt(d["recall"], 2), _fmt(d["precision"], 2), _fmt(d["ms_per_frame"], 0)]
            cells += ([f"{m['found']}/{m['covered']} = {_fmt(m['found_share'], 2)}", _fmt(m['wrong_label_share'], 2),
                       _fmt(m['unmatched_share'], 2), _fmt(m['objects_per_instance'], 2)] if m else ["-"] * 4)
            lines.append(f"| {r['backend']} | {name} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict, figures: dict[str, str], command: str) -> str:
    """The report text; every number in it also sits in the JSON file."""
    meta, cfg = results["meta"], results["config"]
    b = cfg["bootstrap"]
    s = cfg["synthetic"]
    ref = cfg["reference_variant"]
    ref_ok = results["variants"].get(ref, {}).get("status") == "ok"
    out = ["# G2VLM evaluation study", "",
           f"Regenerate: `{command}`", "",
           f"Config `{meta['config']}` (fingerprint `{meta['config_fingerprint']}`), commit `{meta['git_commit']}`, "
           f"{meta['date_utc']} UTC, {meta['wall_s']:.0f} s wall; Python {meta['python']}, numpy {meta['numpy']}, "
           f"Open3D {meta['open3d']}.", "",
           "## Variants", "", "| variant | kind | status | seeds | description |", "|---|---|---|---|---|"]
    for name, v in results["variants"].items():
        status = "ran" if v["status"] == "ok" else f"not run: {v['reason']}"
        out.append(f"| {name}{' (reference)' if name == ref else ''} | {v['kind']} | {status} | "
                   f"{', '.join(map(str, v['seeds'])) or '-'} | {v['description']} |")
    unit = "scene" if b["unit"] == "scene" else "query (reasoning metrics) / scene (others)"
    out += ["", "## Synthetic split", "",
            f"{len(results['scenes'])} scenes of the `{s['split']}` split (seeds from {s['first_seed']}), "
            f"{s['frames_per_scene']} frames each at {s['width']}x{s['height']}, `{s['noise']}` sensor noise. "
            f"Cells: mean over units [{b['confidence']:.0%} {b['method']} bootstrap CI, {b['n_resamples']} "
            f"resamples, unit = {unit}, seeds averaged per unit]"
            + (f"; p = paired {b['test']} test vs `{ref}`{' (Holm-adjusted over variants)' if b['holm'] else ''}."
               if ref_ok else f". No p-values: the reference variant `{ref}` did not run."), ""]
    if not results["scenes"]:
        out += ["No synthetic scenes were evaluated in this run.", ""]
    else:
        out += ["### Reconstruction", ""] + _metric_table(results, RECONSTRUCTION_METRICS) + [""]
        out += ["### Scene graph", ""] + _metric_table(results, SCENE_GRAPH_METRICS) + [""]
        out += ["### Reasoning (referring expressions of the GT)", ""] + _metric_table(results, REASONING_METRICS)
        out += ["", "### Runtime (this machine, per scene means)", ""]
        out += _metric_table(results, RUNTIME_METRICS, with_test=False) + [""]
        tr = results["tracking"]
        if tr.get("ate_rmse_ci"):
            ci = tr["ate_rmse_ci"]
            out += ["### Odometry", "",
                    f"RGBDTracker (frame-to-frame, started at the GT first pose) vs GT poses, SE(3)-aligned ATE "
                    f"RMSE over tracked frames: {_fmt(ci['estimate'])} m [{_fmt(ci['low'])}, {_fmt(ci['high'])}] "
                    f"(n = {ci['n']} scenes); mean fraction of frames tracked {_fmt(tr['tracked_fraction_mean'])}.",
                    ""]
    out += ["## Real data", ""]
    if results["real"]:
        out += ["Few frames per dataset and no GT surface, so reconstruction consistency and odometry only "
                "(fusion with the datasets' GT poses, voxel "
                f"{cfg['reconstruction']['voxel_size_m']} m). ICL-NUIM: Handa et al., ICRA 2014 (CC BY 3.0); "
                "3DMatch: Zeng et al., CVPR 2017.", ""] + _real_table(results) + [""]
    else:
        out += ["No real datasets were evaluated in this run.", ""]
    if results.get("recognition"):
        out += ["### Recognition", ""] + _recognition_table(results) + [""]
    if figures:
        out += ["## Figures", ""]
        for title, rel in figures.items():
            out += [f"### {title}", "", f"![{title}]({rel})", ""]
    out += ["## Definitions", "",
            "- Chamfer / F-score@5cm: fused TSDF cloud vs the observed GT surface (noise-free depth back-projected "
            "at GT poses, so only what the camera saw counts); Chamfer = mean of both directed mean distances.",
            "- mesh IoU (observed): surface-voxel IoU (voxel "
            f"{cfg['reconstruction']['iou_voxel_m']} m) of the fused mesh vs the GT mesh restricted to the observed "
            "region; (full GT): the same without the restriction. Occupancy IoU: voxels occupied by the fused cloud "
            "vs by the observed GT surface.",
            "- depth consistency: per frame, median distance of its back-projected depth (GT pose) to the fused "
            "mesh, averaged over frames.",
            "- GT matched@t: fraction of GT objects matched one-to-one (Hungarian on 3D box IoU) at IoU >= t.",
            "- predicate accuracy: agreement of the holds / does-not-hold decision of every predicate (view-"
            "dependent ones per reference view) over ordered pairs of matched objects, predicted relations "
            "recomputed from predicted boxes with g2vlm_core.predicates; triplet recall: GT (subject, predicate, "
            "object, view) triplets reproduced between the matched predictions (unmatched = miss).",
            "- Acc@t: the QueryEngine's top achievable answer to a GT referring expression has 3D IoU >= t with the "
            "target's GT box. R@k: the prediction matched to the target is among the first k ranked answers.",
            "- Seeds: learned variants are trained once per seed; per-unit values are averaged over seeds before "
            "the bootstrap, and the spread of seed means is in the JSON (`seed_sd`).", ""]
    return "\n".join(out)


def _figure_variants(results: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in FIGURE_METRICS if any(m in v for v in results["summary"].values())]
    if not metrics:
        return False
    names = list(results["variants"])
    cols = 4
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 0.45 * len(names) * rows + 1.4 * rows), squeeze=False)
    for ax, m in zip(axes.ravel(), metrics):
        for i, n in enumerate(names):
            e = results["summary"].get(n, {}).get(m)
            if e is None:
                ax.text(0.02, i, "not run" if results["variants"][n]["status"] != "ok" else "n/a", va="center",
                        fontsize=7, color="grey", transform=ax.get_yaxis_transform())
                continue
            ci = e["ci"]
            lo = ci["estimate"] - ci["low"] if ci["low"] is not None and math.isfinite(ci["low"]) else 0.0
            hi = ci["high"] - ci["estimate"] if ci["high"] is not None and math.isfinite(ci["high"]) else 0.0
            ax.errorbar(ci["estimate"], i, xerr=[[max(lo, 0.0)], [max(hi, 0.0)]], fmt="o", capsize=3,
                        color=f"C{i % 10}")  # one colour per variant across panels
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_ylim(-0.5, len(names) - 0.5)
        ax.invert_yaxis()
        ax.set_title(LABELS.get(m, m) + (" (lower better)" if m in LOWER_IS_BETTER else ""), fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    conf = results["config"]["bootstrap"]["confidence"]
    fig.suptitle(f"Metric per variant, mean with {conf:.0%} bootstrap CI", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97))  # leave the top strip to the suptitle
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _figure_cloud(recon, title: str, path: Path, max_points: int = 60000) -> bool:
    """Top-down scatter of a cloud coloured by its error (clipped at the 95th percentile so outliers do not
    wash out the scale), higher points drawn last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts, err = recon.cloud, recon.cloud_error_m
    if pts is None or err is None or len(pts) == 0:
        return False
    ok = np.isfinite(err)
    pts, err = pts[ok], err[ok]
    if len(pts) > max_points:
        idx = np.random.default_rng(0).choice(len(pts), max_points, replace=False)
        pts, err = pts[idx], err[idx]
    order = np.argsort(pts[:, 2])
    vmax = float(np.quantile(err, 0.95)) if len(err) else 1.0
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(pts[order, 0], pts[order, 1], c=err[order], s=0.6, cmap="viridis", vmin=0.0,
                    vmax=max(vmax, 1e-4), rasterized=True)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(sc, ax=ax, label=recon.cloud_error_kind + " (clipped at p95)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(results: dict, out_dir: str | Path, command: str = "g2vlm-eval") -> dict[str, Path]:
    """Write report.md, results.json and the PNG figures into ``out_dir``; returns their paths by role."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    paths: dict[str, Path] = {}
    if _figure_variants(results, out / "figures" / "variants_ci.png"):
        figures["Metric per variant with CI bars"] = "figures/variants_ci.png"
    clouds = results.get("_clouds", {})
    for variant, recon in clouds.get("synthetic", {}).items():
        name = f"recon_error_{variant}_{recon.name}.png"
        if _figure_cloud(recon, f"{variant}, {recon.name}\nfused cloud coloured by distance to the GT mesh "
                                "(top-down)", out / "figures" / name):
            figures[f"Reconstruction error, {variant} on {recon.name}"] = f"figures/{name}"
    for ds, recon in clouds.get("real", {}).items():
        name = f"real_consistency_{ds}.png"
        if _figure_cloud(recon, f"{ds}\nframe points coloured by distance to the fused mesh (top-down)",
                         out / "figures" / name):
            figures[f"Depth consistency, {ds}"] = f"figures/{name}"
    serial = {k: v for k, v in results.items() if not k.startswith("_")}
    serial["figures"] = figures
    serial["command"] = command
    paths["json"] = out / JSON_NAME
    paths["json"].write_text(json.dumps(_jsonable(serial), indent=1, allow_nan=False))
    paths["markdown"] = out / REPORT_NAME
    paths["markdown"].write_text(markdown(serial, figures, command))
    for title, rel in figures.items():
        paths[title] = out / rel
    log.info("report written to %s", out)
    return paths
