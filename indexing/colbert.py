"""ColBERT checkpoints as token encoders: the colbert-ai format and the PyLate format.

Both are a BERT-like encoder followed by a linear projection to ``dim``, with a marker token
after ``[CLS]`` (``[Q]`` for queries, ``[D]`` for documents), queries padded to ``query_maxlen``
with ``[MASK]`` tokens that are encoded and kept (query augmentation; by default the text
tokens do not attend to them), and punctuation skipped on the document side, where ``[CLS]``,
the marker and ``[SEP]`` are kept as both libraries do. Outputs are L2-normalised.

- colbert-ai (e.g. ``colbert-ir/colbertv2.0``): a Hugging Face BERT folder whose weights hold
  ``bert.*`` and ``linear.weight`` (``HF_ColBERT``); settings in ``artifact.metadata``
  (``dim``, ``query_maxlen``, ``doc_maxlen``, ``query_token_id`` ``[unused0]``,
  ``doc_token_id`` ``[unused1]``, ``attend_to_mask_tokens``, ``mask_punctuation``).
- PyLate: a sentence-transformers folder (``modules.json``: Transformer + ``pylate.models.Dense.Dense``
  or ``sentence_transformers`` Dense modules) with ``config_sentence_transformers.json`` giving
  ``query_prefix`` / ``document_prefix`` (``"[Q] "`` / ``"[D] "``, added tokenizer tokens),
  ``query_length``, ``document_length``, ``do_query_expansion``, ``attend_to_expansion_tokens``
  and ``skiplist_words``.

:func:`load_token_encoder` picks the right loader for a name or path.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinrag.errors import ModelLoadError
from clinrag.indexing.encoders import (
    DEFAULT_MODEL,
    HFTokenEncoder,
    Progress,
    TokenEncoder,
    build_ids,
    load_hf,
    local_model_dir,
    pad_batch,
    pick_device,
    punctuation_ids,
    special_layout,
    warn_truncated,
)

log = logging.getLogger(__name__)
_ACTIVATIONS = {"Identity": None, "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid"}


@dataclass(frozen=True)
class DenseLayer:
    """One projection step: ``act(x @ weight.T + bias)`` (+ ``x`` or ``x @ residual.T`` when ``use_residual``)."""

    weight: np.ndarray  # (out, in)
    bias: np.ndarray | None = None
    activation: str | None = None  # None (identity), "tanh", "relu", "gelu" or "sigmoid"
    use_residual: bool = False
    residual: np.ndarray | None = None  # (out, in) when in != out


class ColBERTEncoder:
    """A ColBERT model: encoder + projection + markers + query augmentation (a :class:`TokenEncoder`)."""

    def __init__(self, name: str, tokenizer: Any, model: Any, linear: np.ndarray | Sequence[DenseLayer], *,
                 query_marker: int | None, doc_marker: int | None, query_maxlen: int, doc_maxlen: int,
                 attend_to_mask: bool = False, query_expansion: bool = True, skip_ids: set[int] | None = None,
                 lowercase: bool = False, device: str | None = None) -> None:
        import torch

        self.name = name
        self.tokenizer = tokenizer
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        layers = [DenseLayer(np.asarray(linear))] if isinstance(linear, np.ndarray) else list(linear)
        if not layers:
            raise ModelLoadError(f"{name}: a ColBERT model needs a projection layer")

        def t(a: np.ndarray | None) -> Any:
            return None if a is None else torch.as_tensor(np.asarray(a, dtype=np.float32), device=self.device)

        self._layers = [(t(x.weight), t(x.bias), x.activation, x.use_residual, t(x.residual)) for x in layers]
        self.dim = int(layers[-1].weight.shape[0])
        self.query_marker, self.doc_marker = query_marker, doc_marker
        self.query_maxlen, self.doc_maxlen = int(query_maxlen), int(doc_maxlen)
        self.query_expansion = query_expansion
        self.attend_to_mask = attend_to_mask and query_expansion
        self.skip_ids = set(skip_ids) if skip_ids is not None else punctuation_ids(tokenizer)
        self.lowercase = lowercase
        self.truncated = 0
        self._layout = special_layout(tokenizer)
        if query_expansion and tokenizer.mask_token_id is None:
            raise ModelLoadError(f"{name}: query augmentation needs a [MASK] token, the tokenizer has none")

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | None = None) -> ColBERTEncoder:
        """Load a colbert-ai or PyLate checkpoint (a folder, or a hub id in the local cache)."""
        folder = local_model_dir(name_or_path)
        kind = detect_format(folder) if folder is not None else None
        if folder is None or kind == "hf":
            raise ModelLoadError(f"{name_or_path!r} is not a ColBERT checkpoint folder (colbert-ai: artifact.metadata "
                                 "or linear.weight; PyLate: modules.json with a Dense module) nor a cached hub id")
        load = load_colbert_ai if kind == "colbert-ai" else load_pylate
        return load(folder, device=device, name=name_or_path)

    def __repr__(self) -> str:
        return f"ColBERTEncoder({self.name!r}, dim={self.dim}, device={self.device!r})"

    def _project(self, h: Any) -> Any:
        import torch

        for w, b, act, use_res, res in self._layers:
            y = h @ w.T
            if b is not None:
                y = y + b
            if act is not None:
                y = getattr(torch, act)(y) if act != "gelu" else torch.nn.functional.gelu(y)
            if use_res:
                y = y + (h @ res.T if res is not None else h)
            h = y
        return torch.nn.functional.normalize(h, dim=-1)

    def _ids(self, texts: Sequence[str], marker: int | None, maxlen: int, what: str) -> list[list[int]]:
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        ids, cut = build_ids(self.tokenizer, texts, maxlen, marker=marker, layout=self._layout)
        self.truncated += cut
        warn_truncated(cut, maxlen, self.name, what)
        return ids

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                       progress: Progress | None = None) -> list[np.ndarray]:
        """``query_maxlen`` vectors per query with augmentation (text and ``[MASK]`` positions), else one per token."""
        import torch

        if not texts:
            return []
        tok = self.tokenizer
        all_ids = self._ids(texts, self.query_marker, self.query_maxlen, "query")
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for s in range(0, len(all_ids), batch_size):
                batch = all_ids[s:s + batch_size]
                if self.query_expansion:
                    ids, att = pad_batch(batch, tok.mask_token_id, self.query_maxlen)
                    if self.attend_to_mask:
                        att.fill_(1)
                    keep = torch.ones_like(att, dtype=torch.bool)
                else:
                    ids, att = pad_batch(batch, _pad_id(tok))
                    keep = att.bool()
                vec = self._forward(ids, att)
                out += [vec[i][keep[i].to(vec.device)].to(torch.float16).cpu().numpy() for i in range(len(batch))]
                if progress is not None:
                    progress(len(out))
        return out

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                         progress: Progress | None = None) -> list[np.ndarray]:
        """One vector per document token, punctuation (the skiplist) and padding left out."""
        import torch

        if not texts:
            return []
        all_ids = self._ids(texts, self.doc_marker, self.doc_maxlen, "document")
        order = np.argsort([-len(x) for x in all_ids], kind="stable")
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float16)] * len(texts)
        skip = torch.tensor(sorted(self.skip_ids), dtype=torch.long)
        done = 0
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                idx = order[s:s + batch_size]
                ids, att = pad_batch([all_ids[i] for i in idx], _pad_id(self.tokenizer))
                vec = self._forward(ids, att)
                keep = (att.bool() & ~torch.isin(ids, skip)).to(vec.device)
                for row, i in enumerate(idx):
                    out[int(i)] = vec[row][keep[row]].to(torch.float16).cpu().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done)
        return out

    def _forward(self, ids: Any, att: Any) -> Any:
        h = self.model(input_ids=ids.to(self.device), attention_mask=att.to(self.device)).last_hidden_state
        return self._project(h.float())


def _pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.mask_token_id)


# -- format detection and loaders ------------------------------------------------------------------------

def _weight_keys(folder: Path) -> set[str]:
    st = folder / "model.safetensors"
    if st.exists():
        from safetensors import safe_open

        with safe_open(str(st), framework="pt") as f:
            return set(f.keys())
    if (folder / "pytorch_model.bin").exists():
        return set(_state_dict(folder))
    return set()


def detect_format(folder: Path) -> str:
    """``"colbert-ai"``, ``"pylate"`` or ``"hf"`` (any other Hugging Face encoder) for a model folder."""
    modules = folder / "modules.json"
    if modules.exists():
        try:
            types = [str(m.get("type", "")) for m in json.loads(modules.read_text())]
        except (ValueError, AttributeError) as exc:
            raise ModelLoadError(f"{modules} is not valid JSON: {exc}") from exc
        if any(t.endswith("Dense") for t in types):
            return "pylate"
    if (folder / "artifact.metadata").exists():
        return "colbert-ai"
    config = folder / "config.json"
    if config.exists():
        try:
            archs = json.loads(config.read_text()).get("architectures") or []
        except ValueError:
            archs = []
        if "HF_ColBERT" in archs or "linear.weight" in _weight_keys(folder):
            return "colbert-ai"
    return "hf"


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


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def load_colbert_ai(path: str | Path, *, device: str | None = None, name: str | None = None) -> ColBERTEncoder:
    """Load a colbert-ai checkpoint folder (``artifact.metadata`` + BERT weights with ``linear.weight``)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(path)
    meta = _read_json(folder / "artifact.metadata")
    meta = meta.get("config", meta) if isinstance(meta.get("config"), dict) else meta  # colbert-ai may nest it
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the colbert-ai checkpoint {folder}: it needs config.json and the "
                             f"tokenizer files of a Hugging Face BERT folder ({exc})") from exc
    model = AutoModel.from_config(config)
    state = _state_dict(folder)
    if "linear.weight" not in state:
        raise ModelLoadError(f"{folder} is not a colbert-ai checkpoint: its weights have no 'linear.weight'")
    prefix = f"{model.base_model_prefix}."
    if not any(k.startswith(prefix) for k in state):
        prefix = ""
    body = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k != "linear.weight"}
    missing, _unexpected = model.load_state_dict(body, strict=False)
    if [m for m in missing if "position_ids" not in m]:
        raise ModelLoadError(f"{folder}: encoder weights missing {missing[:5]}")
    linear = state["linear.weight"].float().numpy()
    if "dim" in meta and int(meta["dim"]) != linear.shape[0]:
        raise ModelLoadError(f"{folder}: artifact.metadata says dim {meta['dim']} but linear.weight is {linear.shape}")
    skip = punctuation_ids(tok) if meta.get("mask_punctuation", True) else set()
    return ColBERTEncoder(
        name or str(folder), tok, model, linear,
        query_marker=_token_id(tok, meta.get("query_token_id", "[unused0]")),
        doc_marker=_token_id(tok, meta.get("doc_token_id", "[unused1]")),
        query_maxlen=int(meta.get("query_maxlen", 32)), doc_maxlen=int(meta.get("doc_maxlen", 180)),
        attend_to_mask=bool(meta.get("attend_to_mask_tokens", False)), skip_ids=skip, device=device)


def _dense(folder: Path) -> DenseLayer:
    cfg = _read_json(folder / "config.json")
    weights = _state_dict(folder)
    if "linear.weight" not in weights:
        raise ModelLoadError(f"{folder} has no 'linear.weight': not a Dense projection")
    act_name = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity")).rsplit(".", 1)[-1]
    if act_name not in _ACTIVATIONS:
        raise ModelLoadError(f"{folder}: unsupported activation {cfg.get('activation_function')!r}")
    res = weights.get("residual.weight")
    return DenseLayer(weights["linear.weight"].float().numpy(),
                      weights["linear.bias"].float().numpy() if "linear.bias" in weights else None,
                      _ACTIVATIONS[act_name], bool(cfg.get("use_residual", False)),
                      res.float().numpy() if res is not None else None)


def load_pylate(path: str | Path, *, device: str | None = None, name: str | None = None) -> ColBERTEncoder:
    """Load a PyLate (sentence-transformers) ColBERT folder: Transformer + Dense projection(s)."""
    folder = Path(path)
    try:
        modules = sorted(json.loads((folder / "modules.json").read_text()), key=lambda m: int(m.get("idx", 0)))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"cannot read {folder / 'modules.json'}: {exc}") from exc
    dense = [m for m in modules if str(m.get("type", "")).endswith("Dense")]
    if not dense:
        raise ModelLoadError(f"{folder}/modules.json lists no Dense projection: not a PyLate ColBERT model")
    transformer = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), {"path": ""})
    tdir = folder / transformer.get("path", "")
    tok, model = load_hf(str(tdir), "PyLate model")
    cfg = _read_json(folder / "config_sentence_transformers.json")
    st_cfg = _read_json(tdir / "sentence_bert_config.json")
    words = cfg.get("skiplist_words")
    words = list(string.punctuation) if words is None else words
    skip = {int(i) for i in (tok.convert_tokens_to_ids(w) for w in words) if i is not None}  # as PyLate does
    expansion = cfg.get("do_query_expansion")
    expansion = True if expansion is None else bool(expansion)
    q_prefix, d_prefix = cfg.get("query_prefix"), cfg.get("document_prefix")
    return ColBERTEncoder(
        name or str(folder), tok, model, [_dense(folder / m["path"]) for m in dense],
        query_marker=_prefix_id(tok, "[Q] " if q_prefix is None else q_prefix),
        doc_marker=_prefix_id(tok, "[D] " if d_prefix is None else d_prefix),
        query_maxlen=int(cfg.get("query_length") or 32), doc_maxlen=int(cfg.get("document_length") or 180),
        attend_to_mask=bool(cfg.get("attend_to_expansion_tokens") or False), query_expansion=expansion,
        skip_ids=skip, lowercase=bool(st_cfg.get("do_lower_case", False)), device=device)


def _prefix_id(tokenizer: Any, prefix: str) -> int | None:
    """A PyLate prefix is one added token (``"[Q] "``, space included); ``""`` means no marker."""
    if prefix == "":
        return None
    for candidate in (prefix, prefix.strip()):
        tid = tokenizer.convert_tokens_to_ids(candidate)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            return tid
    return _token_id(tokenizer, prefix)


def _token_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
        raise ModelLoadError(f"the tokenizer has no marker token {token!r}; is this a ColBERT checkpoint?")
    return tid


def load_token_encoder(name_or_path: str, *, device: str | None = None) -> TokenEncoder:
    """Load a token encoder: a colbert-ai or PyLate checkpoint, else any Hugging Face encoder.

    ``"default"`` is the packaged all-MiniLM-L6-v2. Hub ids are looked up in the local
    Hugging Face cache first, so a cached ColBERT checkpoint loads offline with its projection.
    """
    if name_or_path != DEFAULT_MODEL:
        folder = local_model_dir(name_or_path)
        kind = detect_format(folder) if folder is not None else "hf"
        if kind == "colbert-ai":
            return load_colbert_ai(folder, device=device, name=name_or_path)  # type: ignore[arg-type]
        if kind == "pylate":
            return load_pylate(folder, device=device, name=name_or_path)  # type: ignore[arg-type]
    return HFTokenEncoder(name_or_path, device=device)


__all__ = ["ColBERTEncoder", "DenseLayer", "detect_format", "load_colbert_ai", "load_pylate", "load_token_encoder"]
