"""Attention scoring for the QR-head reranker: loading a causal LM (the packaged Gemma 3 270M is
converted once from its GGUF), the listwise prompt, and the attention mass that selected heads pay
from the question's tokens to each candidate's tokens.

Only the selected heads' question-to-context attention is computed: a forward pre-hook on each
selected layer's attention module recomputes, from that layer's input hidden states, the queries
of the selected heads at the question positions and the keys of their key-value heads (with the
module's own q/k norms and rotary embedding), applies the causal and sliding-window masks, the
scaling and the logit soft-capping, the softmax over all keys, and sums the probabilities over each
candidate's token span. No attention map is materialised for any other head, and the forward pass
stops after the last selected layer. The result equals the model's own eager attention maps
(tests/test_rerank.py checks Gemma 3 with sliding-window layers and Llama).

>>> Prompt([2, 5, 6, 7], [(1, 2), (2, 3)], (3, 4)).spans
[(1, 2), (2, 3)]
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrag.errors import ConfigError, MissingDependencyError, ModelLoadError

log = logging.getLogger(__name__)
PACKAGED = ("gemma", "default")


class _Stop(Exception):
    """Raised by the hook of the last needed layer to end the forward pass early."""




# -- model loading ------------------------------------------------------------------------------------
@dataclass
class CausalLM:
    """A loaded causal LM, its tokenizer and its attention modules in layer order."""

    name: str
    model: Any
    tokenizer: Any
    attn: list[Any] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.attn)

    @property
    def n_heads(self) -> int:
        return int(self.model.config.num_attention_heads)


def _attention_modules(model: Any) -> list[Any]:
    mods = [m for _, m in model.named_modules() if hasattr(m, "q_proj") and hasattr(m, "k_proj")]
    if not mods:
        raise ModelLoadError(f"{type(model).__name__} has no attention modules with q_proj/k_proj; "
                             "the QR-head reranker supports Llama/Gemma/Qwen/Mistral-style causal LMs")
    return mods


def packaged_model_dir() -> Path:
    """The packaged Gemma 3 270M converted once from its GGUF to safetensors, in clinrag's cache."""
    from clinrag.indexing.cache import cache_dir, packaged_gemma_gguf

    target = cache_dir() / "models" / "gemma-3-270m-hf"
    if (target / "config.json").exists():
        return target
    gguf_path = packaged_gemma_gguf()
    try:
        import accelerate  # noqa: F401  (transformers needs it to load a GGUF)
        import gguf  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError("gguf and accelerate", "llm", "converting the packaged Gemma GGUF") from exc
    import shutil
    import uuid

    import torch

    log.info("converting %s to safetensors (once)", gguf_path)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # the tensors are de-quantized on load: drop the GGUF quantization marker so it can be saved
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_causal_lm(name: str) -> CausalLM:
    """Load a causal LM by Hugging Face id or local path; ``gemma``/``default``: the packaged Gemma 3 270M."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise MissingDependencyError("transformers", "llm", "the QR-head reranker") from exc
    path = str(packaged_model_dir()) if name in PACKAGED else name
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the causal LM {name!r} ({exc}); give a local folder or a model id "
                             "in the Hugging Face cache (offline: HF_HUB_OFFLINE=1)") from exc
    model.eval()
    return CausalLM(name, model, tok, _attention_modules(model))


def get_causal_lm(name: str) -> CausalLM:
    """:func:`load_causal_lm` through the process-wide model cache."""
    from clinrag.indexing.cache import get_model

    return get_model("causal-lm", name, load_causal_lm)


# -- prompt and scoring -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    spans: list[tuple[int, int]]  # token span of each candidate
    query: tuple[int, int]  # token span of the question


def build_prompt(tok: Any, query: str, texts: Sequence[str], memory: str | None = None,
                 max_candidate_tokens: int = 150, max_memory_tokens: int = 400) -> Prompt:
    """Token ids of the listwise prompt, with each candidate's and the question's token span."""
    def enc(text: str, limit: int | None = None) -> list[int]:
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        return ids[:limit] if limit else ids

    ids: list[int] = [tok.bos_token_id] if tok.bos_token_id is not None else []
    if memory:
        ids += enc("Patient summary:\n") + enc(memory, max_memory_tokens) + enc("\n\n")
    ids += enc("Records:\n")
    spans = []
    for i, text in enumerate(texts, 1):
        ids += enc(f"[{i}] ")
        start = len(ids)
        ids += enc(" ".join(text.split()), max_candidate_tokens)
        spans.append((start, len(ids)))
        ids += enc("\n")
    ids += enc("\nQuestion: ")
    q0 = len(ids)
    ids += enc(query)
    q = (q0, len(ids))
    ids += enc("\nRelevant records:")
    return Prompt(ids, spans, q)


def head_scores(lm: CausalLM, prompt: Prompt, heads: Sequence[tuple[int, int]] | None = None) -> Any:
    """Attention mass from the question tokens to each candidate, per head: a tensor
    ``[n_layers, n_heads, n_candidates]`` (heads not asked for stay 0; ``heads=None``: all)."""
    import torch

    n_layers, n_heads = lm.n_layers, lm.n_heads
    wanted: dict[int, list[int]] = {}
    for layer, head in heads if heads is not None else [(i, j) for i in range(n_layers) for j in range(n_heads)]:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ConfigError(f"head ({layer}, {head}) is outside the model ({n_layers} layers x {n_heads} heads); "
                              "run `clinrag rerank calibrate` for this model")
        wanted.setdefault(layer, []).append(head)
    out = torch.zeros(n_layers, n_heads, len(prompt.spans))
    if not wanted:  # no head asked for: nothing to compute
        return out
    T = len(prompt.ids)
    qpos = torch.arange(prompt.query[0], prompt.query[1])
    seg = torch.full((T,), -1, dtype=torch.long)
    for c, (a, b) in enumerate(prompt.spans):
        seg[a:b] = c
    cand_mask = seg >= 0
    last = max(wanted)
    handles = []

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            _score_layer(module, hidden, kwargs.get("position_embeddings"), wanted[layer], qpos, seg, cand_mask,
                         out[layer], len(prompt.spans))
            if layer == last:
                raise _Stop
        return hook

    for layer in wanted:
        handles.append(lm.attn[layer].register_forward_pre_hook(make_hook(layer), with_kwargs=True))
    try:
        with torch.inference_mode():
            lm.model(input_ids=torch.tensor([prompt.ids]), use_cache=False)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


def _score_layer(module: Any, hidden: Any, pos_emb: Any, heads: list[int], qpos: Any, seg: Any, cand_mask: Any,
                 out: Any, n_cands: int) -> None:
    import torch

    hd = int(getattr(module, "head_dim", module.q_proj.out_features // module.config.num_attention_heads))
    n_heads = module.q_proj.out_features // hd
    n_kv = module.k_proj.out_features // hd
    group = n_heads // n_kv
    kv_heads = sorted({h // group for h in heads})
    h0 = hidden[0]  # [T, D]
    T = h0.shape[0]
    wq = module.q_proj.weight.view(n_heads, hd, -1)[heads]  # [h, hd, D]
    q = torch.einsum("td,hed->hte", h0[qpos], wq)
    if module.q_proj.bias is not None:
        q = q + module.q_proj.bias.view(n_heads, hd)[heads][:, None, :]
    wk = module.k_proj.weight.view(n_kv, hd, -1)[kv_heads]
    k = torch.einsum("td,hed->hte", h0, wk)
    if module.k_proj.bias is not None:
        k = k + module.k_proj.bias.view(n_kv, hd)[kv_heads][:, None, :]
    if hasattr(module, "q_norm"):
        q, k = module.q_norm(q), module.k_norm(k)
    if pos_emb is not None:
        rope = sys.modules[type(module).__module__].apply_rotary_pos_emb
        cos, sin = pos_emb
        q, _ = rope(q[None], q[None], cos[:, qpos], sin[:, qpos])
        _, k = rope(k[None], k[None], cos, sin)
        q, k = q[0], k[0]
    k = k[[kv_heads.index(h // group) for h in heads]]  # [h, T, hd]
    scaling = float(getattr(module, "scaling", hd ** -0.5))
    logits = torch.einsum("hqe,hke->hqk", q, k) * scaling
    cap = getattr(module, "attn_logit_softcapping", None) or getattr(module.config, "attn_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    keys = torch.arange(T)
    allowed = keys[None, :] <= qpos[:, None]
    window = getattr(module, "sliding_window", None)
    if window:
        allowed &= keys[None, :] > qpos[:, None] - int(window)
    logits = logits.masked_fill(~allowed[None], float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1).sum(dim=1)  # [h, T]: summed over question tokens
    mass = torch.zeros(len(heads), n_cands)
    mass.index_add_(1, seg[cand_mask], probs[:, cand_mask])
    out[heads] = mass


__all__ = ["PACKAGED", "CausalLM", "Prompt", "build_prompt", "get_causal_lm", "head_scores", "load_causal_lm",
           "packaged_model_dir"]
