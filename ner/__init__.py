"""Clinical entity recognition: a packaged Chemical/Disease model, clinical rules, medspaCy
ConText assertion and section detection (:mod:`clinrag.ner.pipeline`), training
(:mod:`clinrag.ner.train`, :mod:`clinrag.ner.transformer`) and evaluation (:mod:`clinrag.ner.evaluate`).
Nothing here imports spaCy until a pipeline is loaded."""
