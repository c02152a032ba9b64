"""Systematic-review evidence retrieval: a protocol in, ranked de-duplicated flagged evidence out.

See :mod:`clinrag.review.protocol` (the protocol file), :mod:`clinrag.review.runner` (running it)
and ``docs/review.md``.
"""
