"""ColBERT checkpoints as token encoders: the colbert-ai format and the PyLate format.

Both are a BERT-like encoder followed by a bias-free linear projection to ``dim``, with a
marker token after ``[CLS]`` (``[Q]`` for queries, ``[D]`` for documents), queries padded to
``query_maxlen`` with ``[MASK]`` tokens that are encoded too (query augmentation), and
punctuation skipped on the document side.

- colbert-ai (e.g. ``colbert-ir/colbertv2.0``): a Hugging Face BERT folder whose weights hold
  ``bert.*`` and ``linear.weight``; settings in ``artifact.metadata`` (``dim``,
  ``query_maxlen``, ``doc_maxlen``, ``query_token_id`` ``[unused0]``, ``doc_token_id``
  ``[unused1]``, ``attend_to_mask_tokens``).
- PyLate: a sentence-transformers folder (``modules.json``: Transformer + ``1_Dense``) with
  ``config_sentence_transformers.json`` giving ``query_prefix`` / ``document_prefix``
  (``[Q] ``/``[D] ``), ``query_length``, ``document_length``, ``do_query_expansion``,
  ``attend_to_expansion_tokens`` and ``skiplist_words``.

:func:`load_token_encoder` picks the right loader for a name or path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clinrag.errors import ModelLoadError
from clinrag.indexing.encoders import (
    DEFAULT_MODEL,
    HFTokenEncoder,
    Progress,
    TokenEncoder,
    load_hf,
    pick_device,
    punctuation_ids,
)

log = logging.getLogger(__name__)


def _state_dict(folder: Path) -> dict[str, Any]:
    import torch

    st = folder / "model.safetensors"
    if st.exists():
        from safetensors.torch import load_file

        return dict(load_file(str(st)))
    pt = folder / "pytorch_model.bin"
    if pt.exists():
        return dict(torch.load(pt, map_location="cpu", weights_only=True))
    raise ModelLoadError(f"{folder} has no model.safetensors or pytorch_model.bin")


class ColBERTEncoder:
    """A ColBERT model: encoder + linear projection + markers + query augmentation."""

    def __init__(self, name: str, tokenizer: Any, model: Any, linear: np.ndarray, *, query_marker: int,
                 doc_marker: int, query_maxlen: int, doc_maxlen: int, attend_to_mask: bool = False,
                 query_expansion: bool = True, skip_ids: set[int] | None = None, device: str | None = None) -> None:
        import torch

        self.name = name
        self.tokenizer = tokenizer
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.linear = torch.as_tensor(np.asarray(linear, dtype=np.float32), device=self.device)  # (dim, hidden)
        self.dim = int(self.linear.shape[0])
        self.query_marker, self.doc_marker = query_marker, doc_marker
        self.query_maxlen, self.doc_maxlen = query_maxlen, doc_maxlen
        self.attend_to_mask = attend_to_mask
        self.query_expansion = query_expansion
        self.skip_ids = skip_ids if skip_ids is not None else punctuation_ids(tokenizer)
        self.truncated = 0

    def __repr__(self) -> str:
        return f"ColBERTEncoder({self.name!r}, dim={self.dim})"

    def _ids(self, text: str, marker: int, maxlen: int) -> list[int]:
        tok = self.tokenizer
        body = tok.encode(text, add_special_tokens=False)
        if len(body) > maxlen - 3:
            self.truncated += 1
            body = body[: maxlen - 3]
        return [tok.cls_token_id, marker, *body, tok.sep_token_id]

    def _forward(self, batch: list[list[int]], *, query: bool) -> tuple[Any, Any, Any]:
        import torch

        tok = self.tokenizer
        width = self.query_maxlen if (query and self.query_expansion) else max(len(x) for x in batch)
        pad = tok.mask_token_id if (query and self.query_expansion) else tok.pad_token_id
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = torch.tensor(x)
            att[i, : len(x)] = 1
        if query and self.query_expansion and self.attend_to_mask:
            att[ids == tok.mask_token_id] = 1
        ids, att = ids.to(self.device), att.to(self.device)
        h = self.model(input_ids=ids, attention_mask=att).last_hidden_state.float()
        vec = torch.nn.functional.normalize(h @ self.linear.T, dim=-1)
        return vec, ids, att

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        import torch

        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                batch = [self._ids(t, self.query_marker, self.query_maxlen) for t in texts[s:s + batch_size]]
                vec, ids, att = self._forward(batch, query=True)
                # with query augmentation every position (text and [MASK]) is kept
                keep = torch.ones_like(att, dtype=torch.bool) if self.query_expansion else att.bool()
                out += [vec[i][keep[i]].to(torch.float16).cpu().numpy() for i in range(len(batch))]
        return out

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                         progress: Progress | None = None) -> list[np.ndarray]:
        import torch

        before = self.truncated
        all_ids = [self._ids(t, self.doc_marker, self.doc_maxlen) for t in texts]
        if self.truncated > before:
            log.warning("%d document(s) longer than %d tokens were truncated by %s; use smaller chunks",
                        self.truncated - before, self.doc_maxlen, self.name)
        order = np.argsort([-len(x) for x in all_ids], kind="stable")
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float16)] * len(texts)
        skip = torch.tensor(sorted(self.skip_ids), device=self.device)
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                idx = order[s:s + batch_size]
                vec, ids, att = self._forward([all_ids[i] for i in idx], query=False)
                keep = att.bool() & ~torch.isin(ids, skip)
                for row, i in enumerate(idx):
                    out[int(i)] = vec[row][keep[row]].to(torch.float16).cpu().numpy()
                if progress is not None:
                    progress(min(s + batch_size, len(texts)))
        return out


def load_colbert_ai(path: str | Path, *, device: str | None = None) -> ColBERTEncoder:
    """Load a colbert-ai checkpoint folder (``artifact.metadata`` + BERT weights with ``linear``)."""
    folder = Path(path)
    meta_path = folder / "artifact.metadata"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the colbert-ai checkpoint {folder}: {exc}") from exc
    model = AutoModel.from_config(config)
    state = _state_dict(folder)
    if "linear.weight" not in state:
        raise ModelLoadError(f"{folder} is not a colbert-ai checkpoint: its weights have no 'linear.weight'")
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    body = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k != "linear.weight"}
    missing, _unexpected = model.load_state_dict(body, strict=False)
    if [m for m in missing if "position_ids" not in m]:
        raise ModelLoadError(f"{folder}: encoder weights missing {missing[:5]}")
    q_tok = meta.get("query_token_id", "[unused0]")
    d_tok = meta.get("doc_token_id", "[unused1]")
    return ColBERTEncoder(
        meta.get("name") or str(folder), tok, model, state["linear.weight"].float().numpy(),
        query_marker=_token_id(tok, q_tok), doc_marker=_token_id(tok, d_tok),
        query_maxlen=int(meta.get("query_maxlen", 32)), doc_maxlen=int(meta.get("doc_maxlen", 180)),
        attend_to_mask=bool(meta.get("attend_to_mask_tokens", False)), device=device)


def load_pylate(path: str | Path, *, device: str | None = None) -> ColBERTEncoder:
    """Load a PyLate (sentence-transformers) ColBERT folder: Transformer + Dense projection."""
    folder = Path(path)
    modules = json.loads((folder / "modules.json").read_text())
    dense = next((m for m in modules if "Dense" in m.get("type", "")), None)
    if dense is None:
        raise ModelLoadError(f"{folder}/modules.json lists no Dense projection: not a PyLate ColBERT model")
    transformer = next((m for m in modules if "Transformer" in m.get("type", "")), {"path": ""})
    tok, model = load_hf(str(folder / transformer.get("path", "")), "PyLate model")
    st_cfg_path = folder / "config_sentence_transformers.json"
    cfg = json.loads(st_cfg_path.read_text()) if st_cfg_path.exists() else {}
    weights = _state_dict(folder / dense["path"])
    linear = weights.get("linear.weight")
    if linear is None:
        raise ModelLoadError(f"{folder / dense['path']} has no 'linear.weight'")
    q_prefix = cfg.get("query_prefix", "[Q] ").strip()
    d_prefix = cfg.get("document_prefix", "[D] ").strip()
    skip: set[int] = set()
    for word in cfg.get("skiplist_words", []):
        skip.update(int(t) for t in tok.encode(word, add_special_tokens=False))
    return ColBERTEncoder(
        str(cfg.get("model_name") or folder), tok, model, linear.float().numpy(),
        query_marker=_token_id(tok, q_prefix), doc_marker=_token_id(tok, d_prefix),
        query_maxlen=int(cfg.get("query_length", 32)), doc_maxlen=int(cfg.get("document_length", 180)),
        attend_to_mask=bool(cfg.get("attend_to_expansion_tokens", False)),
        query_expansion=bool(cfg.get("do_query_expansion", True)), skip_ids=skip or None, device=device)


def _token_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
        raise ModelLoadError(f"the tokenizer has no marker token {token!r}; is this a ColBERT checkpoint?")
    return tid


def load_token_encoder(name_or_path: str, *, device: str | None = None) -> TokenEncoder:
    """Load a token encoder: a colbert-ai or PyLate checkpoint folder, else any Hugging Face encoder.

    ``"default"`` is the packaged all-MiniLM-L6-v2.
    """
    folder = Path(name_or_path)
    if name_or_path != DEFAULT_MODEL and folder.is_dir():
        if (folder / "artifact.metadata").exists():
            return load_colbert_ai(folder, device=device)
        modules = folder / "modules.json"
        if modules.exists() and "Dense" in modules.read_text():
            return load_pylate(folder, device=device)
    return HFTokenEncoder(name_or_path, device=device)


__all__ = ["ColBERTEncoder", "load_colbert_ai", "load_pylate", "load_token_encoder"]
