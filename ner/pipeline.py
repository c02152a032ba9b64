"""clinrag's clinical NER pipeline: statistical Chemical/Disease NER, clinical rules,
medspaCy ConText assertion and section detection, as one spaCy ``Language``.

``load_pipeline("default")`` loads the model shipped in ``clinrag/ner/models/`` (trained by
``clinrag ner train``); any installed spaCy/scispaCy pipeline name or path works the same way
(``--ner-model en_ner_bc5cdr_md``), as does a folder holding a fine-tuned transformer token
classifier (see :mod:`clinrag.ner.transformer`).

>>> ner = load_pipeline("default")
>>> [(e.text, e.label, e.negated) for e in ner("No evidence of pneumonia. Started metformin 500 mg PO BID.")]
[('pneumonia', 'Disease', True), ('metformin 500 mg PO BID', 'Medication', False)]
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clinrag.errors import MissingDependencyError, ModelLoadError
from clinrag.ner.rules import find_rules
from clinrag.ner.schema import Entity

log = logging.getLogger(__name__)
MODELS_DIR = Path(__file__).parent / "models"
#: the packaged model ``"default"`` resolves to
DEFAULT_MODEL = "bc5cdr-minilm-crf"
_LABELS = {"CHEMICAL": "Chemical", "DISEASE": "Disease"}


def _require() -> Any:
    try:
        import spacy
    except ImportError as exc:
        raise MissingDependencyError("spacy", "ner", "clinical entity recognition") from exc
    try:
        import medspacy  # noqa: F401  (registers the medspacy_* factories)
    except ImportError as exc:
        raise MissingDependencyError("medspacy", "ner", "assertion (ConText) and section detection") from exc
    return spacy


def resolve_model(name: str | Path) -> Path | str:
    """A packaged model folder for ``default`` or a packaged name, else ``name`` unchanged."""
    if str(name) == "default":
        name = DEFAULT_MODEL
    packaged = MODELS_DIR / str(name)
    if packaged.is_dir():
        return packaged
    return name


def _register_components() -> None:
    from spacy.language import Language
    from spacy.tokens import Doc, Span
    from spacy.util import filter_spans

    if Language.has_factory("clinrag_clinical_rules"):
        return
    if not Span.has_extension("clinrag_details"):
        Span.set_extension("clinrag_details", default=None)
        Span.set_extension("clinrag_norm", default=None)

    @Language.component("clinrag_newline_sents")
    def newline_sents(doc: Doc) -> Doc:
        """A line break starts a sentence (clinical notes are line-oriented)."""
        for tok in doc[1:]:
            prev = doc[tok.i - 1]
            if prev.is_space and "\n" in prev.text and not tok.is_space:
                tok.is_sent_start = True
        return doc

    @Language.component("clinrag_clinical_rules")
    def clinical_rules(doc: Doc) -> Doc:
        """Add medication/lab/vital/procedure rule matches to ``doc.ents`` (longer spans win)."""
        spans = []
        for m in find_rules(doc.text):
            span = doc.char_span(m.start, m.end, label=m.label, alignment_mode="expand")
            if span is None or not len(span):
                continue
            span._.clinrag_details = m.details
            span._.clinrag_norm = m.normalized
            spans.append(span)
        if spans:
            model = [e for e in doc.ents]
            for e in model:
                e.label_ = _LABELS.get(e.label_, e.label_)
            doc.ents = filter_spans([*spans, *model])  # ties go to rule spans (listed first)
        return doc


#: extra section headers: Markdown headers (as in Synthea notes) and common "Header:" forms
_SECTIONS = {
    "chief complaint": "chief_complaint", "history of present illness": "history_of_present_illness",
    "social history": "social_history", "allergies": "allergies", "medications": "medications",
    "assessment and plan": "observation_and_plan", "plan": "observation_and_plan",
    "assessment": "observation_and_plan", "past medical history": "past_medical_history",
    "family history": "family_history", "vital signs": "physical_exam", "vitals": "physical_exam",
    "physical exam": "physical_exam", "labs": "labs_and_studies", "procedures": "labs_and_studies",
    "imaging": "imaging", "problem list": "problem_list", "diagnoses": "diagnoses",
}


def _section_rules() -> list[Any]:
    from medspacy.section_detection import SectionRule

    rules = []
    for header, category in _SECTIONS.items():
        words = [{"LOWER": w} for w in header.split()]
        rules.append(SectionRule(f"# {header}", category, pattern=[{"TEXT": {"REGEX": "^#+$"}}, *words]))
        if header not in ("plan", "assessment", "allergies", "medications", "labs", "imaging", "diagnoses"):
            rules.append(SectionRule(f"{header}:", category, pattern=[*words, {"ORTH": ":"}]))
    return rules


class NERPipeline:
    """A loaded clinical NER pipeline: call it on text to get :class:`Entity` records."""

    def __init__(self, nlp: Any, model_id: str) -> None:
        self.nlp = nlp
        self.model_id = model_id

    def __call__(self, text: str) -> list[Entity]:
        return entities_of(self.nlp(text))

    def pipe(self, texts: Iterable[str], batch_size: int = 64) -> list[list[Entity]]:
        """Entities of many texts (faster than one by one)."""
        return [entities_of(d) for d in self.nlp.pipe(texts, batch_size=batch_size)]

    def assert_spans(self, text: str, spans: Sequence[tuple[int, int, str]]) -> list[Entity]:
        """Assertion and section of given character spans ``(start, end, label)``: the pipeline's
        sentence splitting, ConText and sectionizer run, its NER and rules do not."""
        from spacy.tokens import Span
        from spacy.util import filter_spans

        doc = self.nlp.make_doc(text)
        skip = {"ner", "clinrag_token_ner", "clinrag_clinical_rules"}
        after = {"medspacy_context", "medspacy_sectionizer"}
        for name, proc in self.nlp.pipeline:
            if name in skip or name in after:
                continue
            doc = proc(doc)
        ents: list[Span] = []
        for a, b, label in spans:
            span = doc.char_span(a, b, label=label, alignment_mode="expand")
            if span is not None:
                ents.append(span)
        doc.ents = filter_spans(ents)
        for name, proc in self.nlp.pipeline:
            if name in after:
                doc = proc(doc)
        return entities_of(doc)

    def docs(self, texts: Iterable[str], batch_size: int = 64) -> Iterable[Any]:
        """The spaCy Docs (for callers that need tokens)."""
        return self.nlp.pipe(texts, batch_size=batch_size)


def entities_of(doc: Any) -> list[Entity]:
    """:class:`Entity` records of a processed Doc (assertions from ConText if it ran)."""
    from spacy.tokens import Span

    has = Span.has_extension
    out = []
    for e in doc.ents:
        flags = {
            "negated": bool(has("is_negated") and e._.is_negated),
            "uncertain": bool(has("is_uncertain") and e._.is_uncertain),
            "historical": bool(has("is_historical") and e._.is_historical),
            "family": bool(has("is_family") and e._.is_family),
            "hypothetical": bool(has("is_hypothetical") and e._.is_hypothetical),
        }
        section = e._.section_category if has("section_category") else None
        details = e._.clinrag_details if has("clinrag_details") else None
        norm = e._.clinrag_norm if has("clinrag_norm") else None
        out.append(Entity(e.text, _LABELS.get(e.label_, e.label_), e.start_char, e.end_char, section=section,
                          normalized=norm or "", details=tuple(details or ()), **flags))
    return out


def model_id(nlp: Any, source: str | Path) -> str:
    """A stable id of the NER model (recorded in an index's manifest)."""
    meta = nlp.meta or {}
    for path in (Path(str(source)) / "clinrag_training.json",):
        if path.exists():
            return f"clinrag-token:{Path(str(source)).name}"
    name = meta.get("name") or Path(str(source)).name
    return f"{meta.get('lang', 'en')}_{name}-{meta.get('version', '0')}"


def load_pipeline(model: str | Path = "default", *, rules: bool = True, context: bool = True,
                  sections: bool = True) -> NERPipeline:
    """Build the pipeline around ``model`` (``default``, a packaged name, a spaCy name or path,
    or a transformer token-classifier folder). Offline: nothing is downloaded."""
    spacy = _require()
    _register_components()
    source = resolve_model(model)
    path = Path(str(source))
    try:
        if path.is_dir() and (path / "config.json").exists() and not (path / "config.cfg").exists():
            from clinrag.ner.transformer import register_token_ner

            register_token_ner()
            nlp = spacy.blank("en")
            nlp.add_pipe("clinrag_token_ner", config={"path": str(path)})
            nlp.meta["name"] = path.name
        else:
            nlp = spacy.load(str(source), exclude=["lemmatizer"])
    except OSError as exc:
        raise ModelLoadError(f"cannot load the NER model {str(model)!r}: {exc}. Give an installed spaCy "
                             "pipeline name, a model folder, or 'default' for clinrag's packaged model") from exc
    mid = model_id(nlp, source)
    first = nlp.pipe_names[0] if nlp.pipe_names else None
    if not ({"parser", "senter", "sentencizer"} & set(nlp.pipe_names)):
        nlp.add_pipe("sentencizer", first=True) if first else nlp.add_pipe("sentencizer")
        nlp.add_pipe("clinrag_newline_sents", after="sentencizer")
    if rules:
        nlp.add_pipe("clinrag_clinical_rules")
    if context:
        nlp.add_pipe("medspacy_context")
    if sections:
        sectionizer = nlp.add_pipe("medspacy_sectionizer")
        sectionizer.add(_section_rules())
    log.info("NER pipeline %s: %s", mid, nlp.pipe_names)
    return NERPipeline(nlp, mid)


@functools.lru_cache(maxsize=4)
def get_pipeline(model: str = "default") -> NERPipeline:
    """:func:`load_pipeline` cached per model name (one load per process)."""
    return load_pipeline(model)


def packaged_models() -> list[str]:
    """Names of the models shipped in ``clinrag/ner/models``."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir()) if MODELS_DIR.is_dir() else []


def model_info(name: str) -> dict[str, Any]:
    """The packaged model's training record (``clinrag_model.json``), if any."""
    p = Path(str(resolve_model(name))) / "clinrag_model.json"
    return json.loads(p.read_text()) if p.exists() else {}


def tag_words(pipeline: NERPipeline, sentences: Sequence[Sequence[str]], context: int = 0) -> list[list[str]]:
    """IOB tags the pipeline's statistical NER gives pre-tokenised sentences (for evaluation).

    Rules, ConText and sections are not run; tokens keep the given segmentation. ``context`` > 0
    tags consecutive sentences together in Docs of at most that many words (as an indexed chunk
    is tagged), then splits the tags back per sentence.
    """
    from spacy.tokens import Doc

    from clinrag.ner.iob import pack_sentences, spans_to_iob

    nlp = pipeline.nlp
    names = [n for n in nlp.pipe_names if n in ("tok2vec", "ner", "transformer", "clinrag_token_ner")
             or n.startswith("ner")]
    groups = pack_sentences([len(s) for s in sentences], context) if context else \
        [(i, i + 1) for i in range(len(sentences))]
    docs = []
    for a, b in groups:
        words = [w for s in sentences[a:b] for w in s]
        starts: list[bool | int | None] = [j == 0 for s in sentences[a:b] for j in range(len(s))]
        docs.append(Doc(nlp.vocab, words=words, sent_starts=starts) if words else Doc(nlp.vocab, words=[]))
    for name in names:
        proc = nlp.get_pipe(name)
        docs = list(proc.pipe(docs)) if hasattr(proc, "pipe") else [proc(d) for d in docs]
    out: list[list[str]] = []
    for (a, b), d in zip(groups, docs, strict=True):
        tags = spans_to_iob(len(d), [(e.start, e.end, _LABELS.get(e.label_, e.label_)) for e in d.ents])
        for s in sentences[a:b]:
            out.append(tags[: len(s)])
            tags = tags[len(s):]
    return out


__all__ = ["DEFAULT_MODEL", "NERPipeline", "entities_of", "get_pipeline", "load_pipeline", "model_id",
           "packaged_models", "resolve_model", "tag_words"]
