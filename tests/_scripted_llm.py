"""A deterministic llama-index LLM for tests: replies with a fixed text and records its prompts."""

from __future__ import annotations

import re
from typing import Any

from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback


class ScriptedLLM(CustomLLM):
    """Streams ``reply`` word by word (or ``replies`` in turn); ``prompts`` holds what it was asked."""

    reply: str = ""
    replies: list[str] = []
    prompts: list[str] = []
    name: str = "scripted-test-llm"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, num_output=64, context_window=4096)

    def _next(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.replies.pop(0) if self.replies else self.reply

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._next(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        reply = self._next(prompt)

        def gen() -> Any:
            text = ""
            for tok in re.findall(r"\s*\S+", reply):
                text += tok
                yield CompletionResponse(text=text, delta=tok)

        return gen()
