"""Tiny randomly initialised Hugging Face models written to a folder (nothing downloaded): an OWL-ViT zero-shot
detector and a CLIP image-text model, with a character-level CLIP tokenizer and small image processors."""
from __future__ import annotations

from pathlib import Path

import torch


def _tiny_tokenizer():
    """A CLIP BPE tokenizer with no merges: every byte is a token (vocabulary of about 500)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    for tok in ("<|startoftext|>", "<|endoftext|>"):
        vocab[tok] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16), len(vocab)


def _tiny_configs(vocab_size: int) -> tuple[dict, dict]:
    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return text, vision


def write_tiny_owlvit(folder: Path, seed: int = 0) -> Path:
    """A random OWL-ViT detector (32 x 32 input, 16 boxes, 32-d embeddings) with its processor, in ``folder``."""
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    tok, n = _tiny_tokenizer()
    text, vision = _tiny_configs(n)
    torch.manual_seed(seed)
    model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
    with torch.no_grad():  # random box heads give zero-width boxes: make every patch predict a box 2.5 cells wide
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0]))
    model.save_pretrained(folder)
    ip = OwlViTImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32})
    OwlViTProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIP model (32 x 32 input, 16-d embeddings) with its processor, in ``folder``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok, n = _tiny_tokenizer()
    text, vision = _tiny_configs(n)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(folder)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder
