"""The ``clinrag`` command groups (Typer), mounted by :mod:`clinrag.cli`, the entry point.

These modules sit above the engine (they open an :class:`clinrag.Engine`), beside ``eval``;
they import only Typer and Rich at module level and load the heavy libraries inside commands,
so ``import clinrag.cli`` stays cheap.
"""
