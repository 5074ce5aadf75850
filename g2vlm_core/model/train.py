"""Train G2VLM: stage 1 geometry pretraining, stage 2 joint geometry-language fine-tuning.

Usage (single process, CPU or one GPU)::

    python -m g2vlm_core.model.train --config config/train_stage1.yaml
    python -m g2vlm_core.model.train --config config/train_stage2.yaml --set train.max_steps=3000

Distributed (one process per GPU; gloo on CPU)::

    torchrun --standalone --nproc_per_node 4 -m g2vlm_core.model.train --config config/train_stage1.yaml

Smoke run on generated toy frames (no dataset needed)::

    python -m g2vlm_core.model.train --config config/train_stage1.yaml --toy --set train.max_steps=20

``--set section.key=value`` overrides any config field (value parsed as YAML). The run writes
``<out_dir>/last/`` (model.safetensors + train_state.pt, resumed automatically), ``<out_dir>/final/``,
``<out_dir>/log.csv`` and TensorBoard events when tensorboard is installed.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from .checkpoint import load_train_state, load_weights, save_checkpoint
from .config import Config, config_to_dict, load_config
from .data import STRUCTURE_CATEGORIES, ToyFrames, answer_vocab, collate, to_device
from .model import G2VLM

log = logging.getLogger(__name__)

LANGUAGE_TERMS = ("w_align", "w_ground", "w_text")


def parse_overrides(items: list[str]) -> dict:
    """["train.lr=1e-3", ...] -> nested dict (values parsed as YAML, never evaluated as code)."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set expects section.key=value, got {item!r}")
        section, name = key.split(".", 1)
        v = yaml.safe_load(value)
        if isinstance(v, str):
            try:
                v = float(v)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
        out.setdefault(section, {})[name] = v
    return out


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: adamw or sgd")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fill_dataset_fields(cfg: Config, categories: tuple[str, ...]) -> None:
    """Class names, object classes and answer vocabulary of the model come from the dataset when not set."""
    m = cfg.model
    if not m.semantic_names:
        m.semantic_names = tuple(categories)
        m.num_semantic = len(categories)
        m.thing_ids = tuple(i for i, c in enumerate(categories) if c not in STRUCTURE_CATEGORIES)
        m.answer_vocab = answer_vocab(tuple(categories))


def make_datasets(cfg: Config, toy: bool):
    t = cfg.train
    with_text = not all(getattr(cfg.loss, w) == 0 for w in LANGUAGE_TERMS)
    if toy:
        return (ToyFrames(max(8, t.max_frames or 32), *t.image_hw, seed=t.seed, with_text=with_text),
                ToyFrames(8, *t.image_hw, seed=t.seed + 1, with_text=with_text))
    from .data import SynthFrames
    return (SynthFrames(t.data_root, "train", t.image_hw, with_text, t.max_frames),
            SynthFrames(t.data_root, "val", t.image_hw, with_text, max(t.eval_batches * t.batch_size, 1)))


def train_mode(model: torch.nn.Module, trainable: tuple[str, ...] = ()) -> None:
    """``model.train()``, but with ``trainable`` prefixes given, modules outside them that hold no trainable
    parameter (the frozen model) stay in eval mode: no dropout in the features a new head learns from."""
    model.train()
    for name, mod in model.named_modules():
        if trainable and name and not name.startswith(tuple(trainable)) \
                and not any(p.requires_grad for p in mod.parameters()):
            mod.eval()


@torch.no_grad()
def evaluate(model: G2VLM, loader, device, n_batches: int, trainable: tuple[str, ...] = ()) -> dict[str, float]:
    """Mean validation losses plus depth RMSE (raw vs refined), relation accuracy and grounding accuracy."""
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(loader):
        if i >= n_batches:
            break
        batch = to_device(batch, device)
        out, losses = model(batch)
        stats = {k: float(v) for k, v in losses.items()}
        gt = batch["depth_gt"]
        m = (gt > 0) & (batch["depth"] > 0) & torch.isfinite(batch["depth"])
        if m.any():
            stats["rmse_raw"] = float(((batch["depth"] - gt)[m] ** 2).mean().sqrt())
            stats["rmse_refined"] = float(((out["depth"] - gt)[m] ** 2).mean().sqrt())
        if "rel_logits" in out and batch["rel_valid"].any():
            correct = ((out["rel_logits"] > 0) == (batch["rel_targets"] > 0.5))[batch["rel_valid"]]
            stats["rel_acc"] = float(correct.float().mean())
        if "ground_scores" in out:
            stats["ground_acc"] = float((out["ground_scores"].argmax(-1) == batch["expr_target"]).float().mean())
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    train_mode(model, trainable)
    return {k: v / max(n, 1) for k, v in sums.items()}


def train(cfg: Config, toy: bool = False) -> Path:
    """Run training as configured; returns the final checkpoint directory (on every rank)."""
    t = cfg.train
    ddp = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    use_cuda = t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available())
    rank, world = 0, 1
    if ddp:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    master = rank == 0
    prev_threads = torch.get_num_threads()
    if t.threads:
        torch.set_num_threads(t.threads)
    try:
        return _train(cfg, toy, ddp, use_cuda, rank, world, device, master)
    finally:
        torch.set_num_threads(prev_threads)


def _train(cfg: Config, toy: bool, ddp: bool, use_cuda: bool, rank: int, world: int, device: torch.device,
           master: bool) -> Path:
    t = cfg.train
    local_rank = device.index or 0
    seed_everything(t.seed + rank)
    out_dir = Path(t.out_dir)
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)

    train_ds, val_ds = make_datasets(cfg, toy)
    fill_dataset_fields(cfg, train_ds.categories)
    if master:
        with open(out_dir / "config.yaml", "w") as f:
            yaml.safe_dump({k: config_to_dict(getattr(cfg, k)) for k in ("model", "loss", "train")}, f, sort_keys=False)
    sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=t.seed) if ddp else None
    loader = DataLoader(train_ds, t.batch_size, shuffle=sampler is None, sampler=sampler, collate_fn=collate,
                        num_workers=t.num_workers, drop_last=len(train_ds) >= t.batch_size * world,
                        persistent_workers=t.num_workers > 0)
    val_loader = DataLoader(val_ds, t.batch_size, shuffle=False, collate_fn=collate, num_workers=0)

    model = G2VLM(cfg.model, cfg.loss).to(device)
    if t.init_from:
        load_weights(model, t.init_from, new_modules=tuple(t.trainable))
        log.info("initialised from %s", t.init_from)
    if t.trainable:
        for name, prm in model.named_parameters():
            prm.requires_grad_(name.startswith(tuple(t.trainable)))
        n = sum(prm.numel() for prm in model.parameters() if prm.requires_grad)
        if n == 0:
            raise ValueError(f"train.trainable {list(t.trainable)} matches no parameter of the model")
        log.info("training %d parameters under %s; the rest is frozen", n, list(t.trainable))
    opt = make_optimizer(model, t)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.amp) if use_cuda else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    step = 0
    last = out_dir / "last"
    if t.resume and (last / "model.safetensors").is_file():
        load_weights(model, last)
        state = load_train_state(last)
        if state is not None:
            if state.get("optimizer_name", t.optimizer) != t.optimizer:
                raise ValueError(f"{last} was trained with optimizer {state['optimizer_name']!r}, the config asks for "
                                 f"{t.optimizer!r}: set train.resume=false or use another out_dir")
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            step = int(state["step"])
            seed_everything(t.seed + rank + 7919 * step)
        log.info("resumed from %s at step %d", last, step)
    raw_model = model
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None,
                                                          find_unused_parameters=True)

    writer = None
    csv_file = csv_writer = None
    if master:
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out_dir / "tb"))
        except Exception:  # tensorboard is optional
            writer = None
        new = not (out_dir / "log.csv").exists()
        csv_file = open(out_dir / "log.csv", "a", newline="")
        csv_writer = csv.writer(csv_file)
        if new:
            csv_writer.writerow(["step", "split", "name", "value", "time_s"])

    def log_row(split: str, values: dict[str, float]) -> None:
        if not master:
            return
        now = time.time()
        for k, v in values.items():
            csv_writer.writerow([step, split, k, f"{v:.6g}", f"{now:.1f}"])
            if writer is not None:
                writer.add_scalar(f"{split}/{k}", v, step)
        csv_file.flush()

    def save(path: Path) -> None:
        if master:
            save_checkpoint(path, raw_model, {"optimizer": opt.state_dict(), "optimizer_name": t.optimizer,
                                              "scaler": scaler.state_dict(),
                                              "step": torch.tensor(step)},
                            extra={"step": step, "stage": t.stage, "train": config_to_dict(t),
                                   "loss": config_to_dict(cfg.loss)})

    from tqdm import tqdm
    bar = tqdm(total=t.max_steps, initial=step, disable=not master, desc=f"stage {t.stage}", dynamic_ncols=True)
    train_mode(raw_model, tuple(t.trainable))
    it = iter(loader)
    epoch = 0
    acc_losses: dict[str, float] = {}
    while step < t.max_steps:
        lr = lr_at(step, t)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        for micro in range(t.grad_accum):
            try:
                batch = next(it)
            except StopIteration:
                epoch += 1
                if sampler is not None:
                    sampler.set_epoch(epoch)
                it = iter(loader)
                batch = next(it)
            batch = to_device(batch, device)
            sync = contextlib.nullcontext() if (not ddp or micro == t.grad_accum - 1) else model.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    _, losses = model(batch)
                loss = losses["total"] / t.grad_accum
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at step {step}: "
                                             f"{ {k: float(v) for k, v in losses.items()} }")
                scaler.scale(loss).backward()
            for k, v in losses.items():
                acc_losses[k] = acc_losses.get(k, 0.0) + float(v.detach()) / t.grad_accum
        if t.clip_grad > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(raw_model.parameters(), t.clip_grad)
        scaler.step(opt)
        scaler.update()
        step += 1
        bar.update(1)
        if step % t.log_every == 0 or step == t.max_steps:
            vals = {k: v / t.log_every for k, v in acc_losses.items()} if step % t.log_every == 0 else acc_losses
            vals["lr"] = lr
            log_row("train", vals)
            bar.set_postfix(loss=f"{vals.get('total', 0):.3f}")
            acc_losses = {}
        if t.eval_every and (step % t.eval_every == 0 or step == t.max_steps) and master:
            log_row("val", evaluate(raw_model, val_loader, device, t.eval_batches, tuple(t.trainable)))
        if step % t.ckpt_every == 0 or step == t.max_steps:
            save(last)
    bar.close()
    final = out_dir / "final"
    save(final)
    if csv_file is not None:
        csv_file.close()
    if writer is not None:
        writer.close()
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return final


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML with model / loss / train sections")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="config overrides")
    p.add_argument("--toy", action="store_true", help="train on generated toy frames (smoke runs, tests)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    cfg = load_config(args.config, parse_overrides(args.set))
    final = train(cfg, toy=args.toy)
    log.info("final checkpoint: %s", final)


if __name__ == "__main__":
    main()
