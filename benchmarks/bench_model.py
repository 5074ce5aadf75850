"""Benchmark G2VLM inference: ms per keyframe (320x240, 640x480) and ms per text query, on CPU and CUDA.

Usage::

    python benchmarks/bench_model.py                                  # random weights, config/model_small.yaml
    python benchmarks/bench_model.py --checkpoint runs/stage2/final   # a trained checkpoint
    python benchmarks/bench_model.py --checkpoint runs/stage2/final --data data/synth --threads 1
    python benchmarks/bench_model.py --repeats 20 --json bench.json
    python benchmarks/bench_model.py --checkpoint g2vlm_core/checkpoints/g2vlm_baseline --queries-only

"dense" is the network on the keyframe (depth refinement, normals, semantics, votes); "full" adds instance grouping,
whole-object boxes and object embeddings (G2VLMInference.process_keyframe). With random weights the grouping finds the
maximum number of instances, so "full" is a worst case; a trained model finds the scene's objects. "node" is what
the perception node runs per keyframe (g2vlm_core.recognition.g2vlm.ModelLabeller): the frame downscaled to the width the
checkpoint was trained at, the full model, masks back to the frame's size, segments with world points, the
geometric segmentation that fills in what the model missed and keeps support planes. "query_*" is the node's query
service in process, with the grounding head ranking the candidates ("grounded", the node's default) or its rules
alone, over 50 / 500 objects: median and 99th percentile (issue 15's target: p99 <= 20 ms with 500 objects).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2vlm_core.model import G2VLM, load_config  # noqa: E402
from g2vlm_core.model.data import TOY_CATEGORIES, toy_frame  # noqa: E402
from g2vlm_core.model.inference import G2VLMInference  # noqa: E402
from g2vlm_core.model.train import fill_dataset_fields  # noqa: E402


def timings(fn, repeats: int, warmup: int = 2, sync=lambda: None) -> list[float]:
    """Milliseconds of ``repeats`` calls after ``warmup`` ones."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def timeit(fn, repeats: int, warmup: int = 2, sync=lambda: None) -> float:
    return statistics.median(timings(fn, repeats, warmup, sync))


def load_frame(H: int, W: int, data: str):
    """The first frame of a synthetic dataset resized to H x W, or an analytic toy frame."""
    if not data:
        return toy_frame(0, H, W, n_obj=5)[0]
    from g2vlm_core.model.evaluate import _resize_frame
    from g2vlm_core.synth import SynthDataset
    return _resize_frame(SynthDataset(data, "all")[0].frame(0), (H, W))


def bench_device(inf: G2VLMInference, repeats: int, data: str = "") -> dict[str, float]:
    dev = inf.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    res: dict[str, float] = {}
    for H, W in ((240, 320), (480, 640)):
        frame = load_frame(H, W, data)
        rgb = torch.from_numpy(frame.rgb.copy()).permute(2, 0, 1)[None].float().div(255).to(dev)
        depth = torch.from_numpy(frame.depth_m)[None, None].to(dev)
        K = torch.from_numpy(frame.intrinsics.K).float()[None].to(dev)
        T = torch.from_numpy(frame.T_world_cam).float()[None].to(dev)

        def dense():
            with torch.no_grad(), inf._autocast():
                inf.model.encode_frame(rgb, depth, K, T)

        res[f"dense_ms_{W}x{H}"] = timeit(dense, repeats, sync=sync)
        res[f"full_ms_{W}x{H}"] = timeit(lambda: inf.process_frame(frame), repeats, sync=sync)
        res[f"instances_{W}x{H}"] = len(inf.process_frame(frame).instances)
        if inf.training_image_hw:
            from g2vlm_core.recognition.g2vlm import ModelLabeller
            from g2vlm_core.geometry.segmentation import Segmenter
            lab = ModelLabeller(inf, Segmenter(), input_width=inf.training_image_hw[1], geometry_fill=True)
            res[f"node_ms_{W}x{H}"] = timeit(lambda: lab(frame, frame.T_world_cam), repeats, sync=sync)
    words = ["red", "blue", "small", "large", "mug", "chair", "table", "lamp", "left of", "on", "near", "behind"]
    rng = np.random.default_rng(0)
    queries = [" ".join(rng.choice(words, 5)) + f" {i}" for i in range(repeats + 2)]
    it = iter(queries)
    res["text_ms_uncached"] = timeit(lambda: inf.embed_text(next(it)), repeats, sync=sync)
    res["text_ms_cached"] = timeit(lambda: inf.embed_text(queries[0]), repeats, sync=sync)
    res.update(bench_queries(inf, repeats, sync))
    return res


def bench_queries(inf: G2VLMInference, repeats: int, sync) -> dict[str, float]:
    """The node's query service in process (QueryEngine with the grounding head as its grounder, and its rules
    alone) over a graph of 50 / 500 objects with random boxes and embeddings, labels spread over the model's
    classes; a query of each family in turn: median and 99th percentile."""
    from g2vlm_core.recognition.g2vlm import ModelLabeller
    from g2vlm_core.predicates import Viewpoint
    from g2vlm_core.language.query import QueryEngine
    from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject
    from g2vlm_core.geometry.segmentation import Segmenter
    lab = ModelLabeller(inf, Segmenter())
    names = [inf.cfg.semantic_names[i] for i in inf.thing_ids] or ["object"]
    rng = np.random.default_rng(0)
    view = Viewpoint(np.array([-1.0, 0.0, 1.2]), np.array([1.0, 0.2, -0.3]))
    # one query of each family the query language answers, in turn (parses are cached after the first round, as
    # for a planner that repeats its phrasings)
    texts = ["the red mug left of the table", "the chair", "the big shelf near the sofa", "where is the lamp",
             "the small box on the desk", "the mug closest to the sofa", "the second chair from the left",
             "the box that is not on the desk", "is there a lamp left of the mug?", "how many chairs are there",
             "how many mugs are on the table", "what is on the desk", "what colour is the sofa",
             "how far is the lamp from the bed", "the cabinet's box", "find the elephant on the sofa",
             "'; DROP TABLE objects; --", "the chair between the table and the sofa", "the box bigger than the mug",
             "which is bigger, the sofa or the bed?", "the chiar near the desk", "are there more than two chairs?"]
    res = {}
    for n in (50, 500):
        graph = SceneGraph([SceneObject(i, names[i % len(names)], Box3D(rng.uniform(-3, 3, 3), rng.uniform(0.1, 1, 3)),
                                        attributes={"color": "red", "size": "small"},
                                        embedding=rng.normal(size=inf.cfg.embed_dim)) for i in range(n)])
        args = lab.query_args()
        for name, eng in (("grounded", QueryEngine(**args)),
                          ("rules", QueryEngine(text_embedder=args["text_embedder"]))):
            k = iter(range(10 ** 9))
            t = timings(lambda: eng.answer(graph, texts[next(k) % len(texts)], viewpoint=view),
                        max(repeats * len(texts), 10 * len(texts)), warmup=len(texts), sync=sync)
            res[f"query_{name}_ms_{n}_objects"] = statistics.median(t)
            res[f"query_{name}_p99_ms_{n}_objects"] = float(np.percentile(t, 99))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="", help="checkpoint dir or .safetensors (default: random weights)")
    p.add_argument("--config", default=str(REPO / "config" / "model_small.yaml"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("--data", default="", help="benchmark on the first frame of this synthetic dataset root")
    p.add_argument("--queries-only", action="store_true", help="only the query_* figures")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "devices": {}}
    for dev in devices:
        if args.checkpoint:
            inf = G2VLMInference.from_checkpoint(args.checkpoint, dev)
        else:
            cfg = load_config(args.config)
            fill_dataset_fields(cfg, TOY_CATEGORIES)
            torch.manual_seed(0)
            inf = G2VLMInference(G2VLM(cfg.model), dev)
        name = torch.cuda.get_device_name(0) if dev == "cuda" else f"cpu x{torch.get_num_threads()} threads"
        sync = (lambda: torch.cuda.synchronize(inf.device)) if inf.device.type == "cuda" else (lambda: None)
        r = bench_queries(inf, args.repeats, sync) if args.queries_only else bench_device(inf, args.repeats, args.data)
        results["devices"][name] = r
        print(f"== {name} ({'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights'})")
        for k, v in r.items():
            print(f"  {k:32s} {v:9.2f}" if isinstance(v, float) else f"  {k:32s} {v:9d}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
