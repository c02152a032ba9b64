"""Grounded answers: numbered evidence, prompts, citation parsing, support scoring, abstention.

Sits between retrieval and the engine: it turns retrieved :class:`~clinrag.retrieval.base.Hit`
objects into an :class:`~clinrag.generation.types.Answer` (extractively, or with any llama-index
LLM) and never imports the engine. ``Engine.ask`` retrieves and delegates here.
"""
