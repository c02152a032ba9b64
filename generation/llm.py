"""Reaching an LLM through llama-index's LLM interface, with stop strings and token limits.

Any llama-index ``LLM`` works (pass the object itself), or name one with a spec string:

- ``llamacpp`` (default): the packaged Gemma 3 270M GGUF run by llama-cpp-python;
  ``llamacpp:/path/model.gguf`` for another GGUF file;
- ``ollama:MODEL`` (``llama-index-llms-ollama``), ``hf:ID_OR_PATH`` (``llama-index-llms-huggingface``),
  ``openai-like:URL#MODEL`` for OpenAI-compatible local servers such as vLLM or llama.cpp's server
  (``llama-index-llms-openai-like``).

The prompt template family follows the model name (:func:`clinrag.generation.prompts.family_for`)
unless given. Stop strings are applied twice: passed to llama.cpp, and cut client-side for
every LLM, so tokens after a stop string are never shown.

>>> spec = parse_spec("openai-like:http://localhost:8000/v1#qwen2.5-7b-instruct")
>>> spec.kind, spec.target, spec.model
('openai-like', 'http://localhost:8000/v1', 'qwen2.5-7b-instruct')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinrag.errors import ConfigError, MissingDependencyError, ModelLoadError
from clinrag.generation.prompts import Prompt, family_for

log = logging.getLogger(__name__)
KINDS = ("llamacpp", "ollama", "hf", "openai-like")
DEFAULT_LLM = "llamacpp"
TokenCallback = Callable[[str], None]


@dataclass(frozen=True)
class LLMSpec:
    """Which LLM to load: ``kind`` (one of :data:`KINDS`), ``target`` (path, id or URL), ``model``."""

    kind: str
    target: str = ""
    model: str = ""
    family: str | None = None
    max_new_tokens: int = 160
    context_window: int = 4096
    temperature: float = 0.0
    threads: int | None = None


def parse_spec(spec: str, **settings: Any) -> LLMSpec:
    """Parse ``KIND[:TARGET[#MODEL]]`` (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"unknown LLM {spec!r}: use one of {', '.join(k + ':...' for k in KINDS)} "
                          "(e.g. llamacpp:/models/x.gguf, ollama:llama3.2, openai-like:http://localhost:8000/v1#m)")
    target, _, model = rest.partition("#")
    if kind in ("ollama", "hf") and not target:
        example = "llama3.2" if kind == "ollama" else "org/model"
        raise ConfigError(f"--llm {kind}: name the model, e.g. {kind}:{example}")
    if kind == "openai-like" and not target.startswith(("http://", "https://")):
        raise ConfigError("--llm openai-like:URL#MODEL needs the server URL, "
                          "e.g. openai-like:http://localhost:8000/v1#m")
    return LLMSpec(kind, target, model, **settings)


@dataclass
class LoadedLLM:
    """A llama-index LLM plus what clinrag needs to prompt it (name, template family)."""

    llm: Any
    name: str
    family: str

    @classmethod
    def wrap(cls, llm: Any, family: str | None = None, name: str | None = None) -> LoadedLLM:
        """Wrap any llama-index LLM; chat models get the ``chat`` family unless told otherwise."""
        meta = getattr(llm, "metadata", None)
        model_name = name or str(getattr(meta, "model_name", "") or type(llm).__name__)
        if family is None:
            family = "chat" if getattr(meta, "is_chat_model", False) else family_for(Path(model_name).name)
        return cls(llm, Path(model_name).name if "/" in model_name and Path(model_name).exists() else model_name,
                   family)


def load_llm(spec: str | LLMSpec = DEFAULT_LLM) -> LoadedLLM:
    """Load the LLM named by ``spec`` (cached per process by :func:`clinrag.indexing.cache.get_model`)."""
    from clinrag.indexing.cache import get_model

    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind == "llamacpp" and not parsed.target:  # resolved first: it takes the cache lock itself
        from dataclasses import replace

        from clinrag.indexing.cache import packaged_gemma_gguf

        parsed = replace(parsed, target=str(packaged_gemma_gguf()))
    return get_model("llm", repr(parsed), lambda _: _load(parsed))


def _need(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, "llm", f"the LLM backend {module}") from exc


def _load(spec: LLMSpec) -> LoadedLLM:
    if spec.kind == "llamacpp":
        _need("llama_cpp", "llama-cpp-python")
        mod = _need("llama_index.llms.llama_cpp", "llama-index-llms-llama-cpp")
        path = Path(spec.target).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"GGUF model file {path} does not exist; pass --llm llamacpp:/path/to/model.gguf")
        family = spec.family or family_for(path.name)
        model_kwargs: dict[str, Any] = {"verbose": False}
        if spec.threads:
            model_kwargs["n_threads"] = spec.threads
        try:
            llm = mod.LlamaCPP(model_path=str(path), temperature=spec.temperature, max_new_tokens=spec.max_new_tokens,
                               context_window=spec.context_window, generate_kwargs={"top_k": 1},
                               model_kwargs=model_kwargs, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc
        return LoadedLLM(llm, path.name, family)
    if spec.kind == "ollama":
        mod = _need("llama_index.llms.ollama", "llama-index-llms-ollama")
        llm = mod.Ollama(model=spec.target, temperature=spec.temperature, request_timeout=300.0,
                         context_window=spec.context_window)
        return LoadedLLM.wrap(llm, spec.family or "chat", spec.target)
    if spec.kind == "hf":
        mod = _need("llama_index.llms.huggingface", "llama-index-llms-huggingface")
        llm = mod.HuggingFaceLLM(model_name=spec.target, tokenizer_name=spec.target,
                                 max_new_tokens=spec.max_new_tokens, context_window=spec.context_window,
                                 generate_kwargs={"do_sample": False})
        return LoadedLLM.wrap(llm, spec.family or family_for(spec.target), spec.target)
    mod = _need("llama_index.llms.openai_like", "llama-index-llms-openai-like")
    llm = mod.OpenAILike(api_base=spec.target, model=spec.model or "default", api_key="local", is_chat_model=True,
                         max_tokens=spec.max_new_tokens, temperature=spec.temperature,
                         context_window=spec.context_window)
    return LoadedLLM.wrap(llm, spec.family or "chat", spec.model or spec.target)


@dataclass(frozen=True)
class Generation:
    """What the LLM wrote (cut at the first stop string) and when."""

    text: str
    first_token_s: float
    total_s: float
    stopped: str = ""


class _StopCutter:
    """Cuts a token stream at the first stop string, holding back text that may begin one."""

    def __init__(self, stops: Sequence[str], on_token: TokenCallback | None) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.on_token = on_token
        self.text = ""
        self.emitted = 0
        self.stopped = ""

    def feed(self, delta: str) -> bool:
        """Add ``delta``; return False once a stop string has been seen."""
        self.text += delta
        cut = min(((i, s) for s in self.stops if (i := self.text.find(s)) >= 0), default=None)
        if cut is not None:
            self.text, self.stopped = self.text[:cut[0]], cut[1]
            self._emit(len(self.text))
            return False
        self._emit(len(self.text) - self.hold)
        return True

    def finish(self) -> str:
        self._emit(len(self.text))
        return self.text

    def _emit(self, upto: int) -> None:
        if upto > self.emitted:
            if self.on_token is not None:
                self.on_token(self.text[self.emitted:upto])
            self.emitted = upto


def generate(model: LoadedLLM, prompt: Prompt, *, on_token: TokenCallback | None = None,
             max_chars: int = 4000) -> Generation:
    """Stream ``prompt`` through the LLM (chat messages for the ``chat`` family, else a raw completion)."""
    llm = model.llm
    gk = getattr(llm, "generate_kwargs", None)
    if isinstance(gk, dict) and prompt.stop and type(llm).__name__ == "LlamaCPP":
        gk["stop"] = list(prompt.stop)  # llama.cpp stops itself too (LlamaCPP reads generate_kwargs per call)
    cutter = _StopCutter(prompt.stop, on_token)
    t0 = time.perf_counter()
    first = None
    if prompt.family == "chat":
        from llama_index.core.llms import ChatMessage

        stream = llm.stream_chat([ChatMessage(role="system", content=prompt.system),
                                  ChatMessage(role="user", content=prompt.user)])
    else:
        stream = llm.stream_complete(prompt.text, formatted=True)
    for chunk in stream:
        delta = chunk.delta or ""
        if delta and first is None:
            first = time.perf_counter() - t0
        if not cutter.feed(delta) or len(cutter.text) >= max_chars:
            break
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    text = cutter.finish()
    total = time.perf_counter() - t0
    return Generation(text.strip(), first if first is not None else total, total, cutter.stopped)


__all__ = ["DEFAULT_LLM", "KINDS", "Generation", "LLMSpec", "LoadedLLM", "generate", "load_llm", "parse_spec"]
