"""The evaluation study's one config (config/eval_study.yaml) as validated dataclasses; errors name the bad key."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .reconstruction import ReconstructionEvalConfig
from .scene_graph import SceneGraphEvalConfig

VARIANT_KINDS = ("learned", "geometry", "oracle")
OVERRIDE_SECTIONS = ("model", "loss", "train")


class StudyConfigError(ValueError):
    """The study config cannot be used; the message names the key and what is wrong."""


@dataclass(frozen=True)
class VariantSpec:
    name: str  # row name in the report, unique
    kind: str  # "learned" (trained G2VLM variant), "geometry" (PerceptionPipeline without a model), "oracle"
    description: str = ""  # one line for the report
    stages: tuple[int, ...] = (1, 2)  # training stages run for a learned variant (1 = geometry, 2 = joint)
    overrides: dict[str, Any] = field(default_factory=dict)  # "section.key" -> value, applied to every stage
    checkpoint: str = ""  # evaluate this checkpoint instead of training (e.g. the shipped model); one "seed"


@dataclass(frozen=True)
class SyntheticConfig:
    split: str = "test"  # fixed split of the scene seeds (synth.split_of_seed): train | val | test
    num_scenes: int = 20  # scenes of that split, from first_seed upward
    first_seed: int = 0  # scene seeds start here
    frames_per_scene: int = 30  # rendered frames along each trajectory
    width: int = 320  # image width (pixels)
    height: int = 240  # image height (pixels)
    noise: str = "kinect"  # sensor noise model of the rendered depth/colour


@dataclass(frozen=True)
class RealConfig:
    datasets: tuple[str, ...] = ("../shared/data/real/3dmatch_seq01_5",
                                 "../shared/data/real/icl_nuim_livingroom1_5")  # folders open_dataset reads
    max_frames: int = 0  # frames per dataset (0 = all)
    annotations: str = "../shared/data/real"  # folder with annotations.json (hand-made boxes of the real frames)
    recognizers: tuple[str, ...] = ("coco", "g2vlm")  # backends measured on the annotations (recognition rows)


@dataclass(frozen=True)
class BootstrapConfig:
    n_resamples: int = 2000  # bootstrap resamples per CI
    confidence: float = 0.95  # two-sided CI level
    method: str = "bca"  # "bca" or "percentile"
    test: str = "permutation"  # paired test vs the reference: "permutation" (sign flip) or "bootstrap"
    test_resamples: int = 10000  # resamples / sign patterns of the paired test
    holm: bool = True  # Holm-adjust each metric's p-values over the variants compared with the reference
    unit: str = "scene"  # resampling unit of query metrics: "scene" (clustered, conservative) or "query"
    seed: int = 0  # seed of every resampling


@dataclass(frozen=True)
class LearnedConfig:
    stage_configs: tuple[str, ...] = ("config/train_stage1.yaml", "config/train_stage2.yaml")  # per stage
    data_root: str = "data/synth"  # synthetic training data (train/val splits)
    runs_dir: str = "runs/eval"  # checkpoints: <runs_dir>/<variant>/seed<k>/stage<s>/final
    max_steps: tuple[int, ...] = (300, 300)  # optimizer steps per stage for the CPU-sized study
    device: str = "auto"  # training / inference device


@dataclass(frozen=True)
class StudyConfig:
    variants: tuple[VariantSpec, ...]  # rows of the report
    reference_variant: str = "full"  # p-values compare every other variant with this one
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds per learned variant
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    real: RealConfig = field(default_factory=RealConfig)
    reconstruction: ReconstructionEvalConfig = field(default_factory=ReconstructionEvalConfig)
    scene_graph: SceneGraphEvalConfig = field(default_factory=SceneGraphEvalConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    learned: LearnedConfig = field(default_factory=LearnedConfig)
    output_dir: str = "reports/eval"  # report, JSON and figures go here
    base_dir: str = ".."  # relative paths resolve against this folder (itself relative to the config file)
    source: str = ""  # the config file it was read from (filled by the loader)

    def resolve(self, path: str) -> Path:
        """A config path as an absolute Path (relative ones against ``base_dir``)."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        root = Path(self.base_dir)
        if not root.is_absolute() and self.source:
            root = Path(self.source).resolve().parent / root
        return (root / p).resolve()

    def variant(self, name: str) -> VariantSpec | None:
        return next((v for v in self.variants if v.name == name), None)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    def fingerprint(self) -> str:
        """Short hash of the settings (not of ``source``), printed in the report so numbers trace to a config."""
        d = self.to_dict()
        d.pop("source", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _build(cls, data: Any, where: str):
    """Dataclass ``cls`` from a mapping: unknown keys and wrong types raise StudyConfigError naming them."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise StudyConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise StudyConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kwargs[name] = _coerce(value, default, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise StudyConfigError(f"{where}: {e}") from e


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise StudyConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise StudyConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StudyConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise StudyConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise StudyConfigError(f"{where}: expected a list, got {value!r}")
        if default:
            return tuple(_coerce(v, default[0], f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise StudyConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise StudyConfigError(msg)


def study_from_dict(d: Any, source: str = "") -> StudyConfig:
    """Validate a parsed YAML mapping into a StudyConfig (raises StudyConfigError)."""
    _check(isinstance(d, dict), f"{source or 'config'}: the top level must be a mapping")
    d = dict(d)
    raw_variants = d.pop("variants", None)
    _check(isinstance(raw_variants, list) and len(raw_variants) > 0,
           "variants: need a non-empty list of {name, kind, ...} entries")
    variants = []
    for i, v in enumerate(raw_variants):
        _check(isinstance(v, dict) and "name" in v and "kind" in v, f"variants[{i}]: needs 'name' and 'kind'")
        spec = _build(VariantSpec, {**v, "stages": v.get("stages", [1, 2])}, f"variants[{i}] ({v.get('name')})")
        _check(spec.kind in VARIANT_KINDS, f"variants[{i}] ({spec.name}): kind must be one of {VARIANT_KINDS}, "
                                           f"got {spec.kind!r}")
        _check(all(s in (1, 2) for s in spec.stages) and len(spec.stages) > 0,
               f"variants[{i}] ({spec.name}): stages must be a non-empty subset of [1, 2]")
        for key in spec.overrides:
            section = str(key).split(".", 1)[0]
            _check("." in str(key) and section in OVERRIDE_SECTIONS,
                   f"variants[{i}] ({spec.name}): override {key!r} must be 'section.key' with section in "
                   f"{OVERRIDE_SECTIONS}")
        variants.append(spec)
    names = [v.name for v in variants]
    _check(len(set(names)) == len(names), f"variants: duplicate names in {names}")
    sections = {"synthetic": SyntheticConfig, "real": RealConfig, "reconstruction": ReconstructionEvalConfig,
                "scene_graph": SceneGraphEvalConfig, "bootstrap": BootstrapConfig, "learned": LearnedConfig}
    kwargs: dict[str, Any] = {"variants": tuple(variants), "source": source}
    for key, cls in sections.items():
        if key in d:
            kwargs[key] = _build(cls, d.pop(key), key)
    top = {f.name: f for f in dataclasses.fields(StudyConfig)}
    for key in list(d):
        _check(key in top and key not in sections and key not in ("variants", "source"),
               f"unknown top-level key {key!r}; known: {sorted(set(top) - {'source'})}")
        kwargs[key] = _coerce(d.pop(key), top[key].default if top[key].default is not dataclasses.MISSING
                              else top[key].default_factory(), key)
    cfg = StudyConfig(**kwargs)
    _check(cfg.variant(cfg.reference_variant) is not None,
           f"reference_variant {cfg.reference_variant!r} is not one of the variants {names}")
    _check(len(cfg.seeds) > 0 and len(set(cfg.seeds)) == len(cfg.seeds), "seeds: need distinct integers")
    s = cfg.synthetic
    _check(s.split in ("train", "val", "test"), f"synthetic.split must be train, val or test, got {s.split!r}")
    _check(s.num_scenes >= 0 and s.frames_per_scene >= 2 and s.width >= 32 and s.height >= 24,
           "synthetic: need num_scenes >= 0, frames_per_scene >= 2 and at least 32x24 pixels")
    b = cfg.bootstrap
    _check(b.method in ("bca", "percentile"), f"bootstrap.method must be bca or percentile, got {b.method!r}")
    _check(b.test in ("permutation", "bootstrap"), f"bootstrap.test must be permutation or bootstrap, got {b.test!r}")
    _check(0.5 <= b.confidence < 1.0, f"bootstrap.confidence must be in [0.5, 1), got {b.confidence}")
    _check(b.n_resamples >= 100 and b.test_resamples >= 100, "bootstrap: n_resamples and test_resamples >= 100")
    _check(b.unit in ("scene", "query"), f"bootstrap.unit must be scene or query, got {b.unit!r}")
    _check(len(cfg.learned.max_steps) == len(cfg.learned.stage_configs),
           "learned: max_steps needs one entry per stage config")
    for p in cfg.real.datasets:
        _check(cfg.resolve(p).is_dir(), f"real.datasets: {p} -> {cfg.resolve(p)} is not a directory")
    return cfg


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file (StudyConfigError on any problem, including a missing file)."""
    p = Path(path)
    if not p.is_file():
        raise StudyConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise StudyConfigError(f"{p}: not valid YAML: {e}") from e
    return study_from_dict(data, str(p.resolve()))
