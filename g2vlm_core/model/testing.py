"""Helpers for fast tests and smoke runs: a tiny randomly initialised local text encoder and a tiny model config."""
from __future__ import annotations

from pathlib import Path

from .config import ModelConfig
from .data import TOY_CATEGORIES, answer_vocab


def write_tiny_text_encoder(folder: str | Path, hidden: int = 32, seed: int = 0) -> Path:
    """A 1-layer BERT (random weights) with the MiniLM tokenizer, saved as a local Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from .encoders import resolve_text_path
    from .config import MINILM
    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(str(resolve_text_path(MINILM)), local_files_only=True)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64))
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def tiny_config(text_encoder: str, **kw) -> ModelConfig:
    """A model small enough for unit tests (tens of ms per step at 48 x 64)."""
    args = dict(stem_channels=(8, 8, 16, 16), width=16, dim=32, n_heads=2, n_geo_layers=1, n_fusion_layers=1,
                bias_hidden=8, mlp_ratio=2, point_k=4, point_channels=(8, 16), embed_dim=16,
                num_semantic=len(TOY_CATEGORIES), semantic_names=TOY_CATEGORIES, thing_ids=(4, 5, 6, 7),
                answer_vocab=answer_vocab(TOY_CATEGORIES), text_encoder=str(text_encoder), min_instance_px=2)
    args.update(kw)
    return ModelConfig(**args)


def objects_everywhere(model, semantic_id: int = 4):
    """Make an untrained model see object class ``semantic_id`` at every pixel, voting at the pixel's own point
    (instance head zeroed): instance grouping then finds a few instances, so code downstream of it can be tested."""
    import torch

    head = model.instance.net[-1]
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    with torch.no_grad():
        head.bias[semantic_id] = 10.0
    return model
