"""How well cited evidence supports an answer sentence: a documented score and threshold.

``support(sentence, cited evidence)`` in [0, 1] is computed as follows.

1. **Lexical recall**: the share of the sentence's content words (lower-cased, English
   stop words and ``[n]`` markers removed, Snowball-stemmed) that occur in the cited
   evidence. A sentence made of the evidence's words scores 1; one about something else ~0.
2. **Token MaxSim** (when the index has a multi-vector text model): each sentence token's
   best cosine against the cited evidence's tokens, averaged (ColBERT's MaxSim divided by the
   sentence length), rescaled from [``floor``, 1] to [0, 1] (``floor`` = 0.5, above what
   all-MiniLM-L6-v2 gives unrelated clinical sentences: measured 0.08-0.36 for unrelated or
   different-drug sentences, 0.79 for a paraphrase, 0.91 for a near copy). The score is then
   the mean of lexical recall and rescaled MaxSim, so paraphrases get partial credit.
3. **Number agreement**: the score is multiplied by the share of the sentence's numbers
   (``9``, ``2.5``, ``30%``) found in the cited evidence; a dose or value the evidence does
   not contain pulls the sentence below the threshold.

A sentence is *supported* when it cites evidence and ``support >= threshold``
(:data:`DEFAULT_THRESHOLD` = 0.5). A sentence without citations scores 0.

>>> s = SupportScorer()
>>> round(s.score("Metformin was started for diabetes [1].", ["Started metformin for type 2 diabetes."])[0], 2)
1.0
>>> s.score("Metformin 850 mg was started [1].", ["Metformin 500 mg started."])[1]
'numbers not in the cited evidence: 850'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from clinrag.generation.citations import strip_citations

if TYPE_CHECKING:
    from clinrag.indexing.encoders import TokenEncoder

DEFAULT_THRESHOLD = 0.5
MAXSIM_FLOOR = 0.5

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom why
will with would you your yours yourself yourselves also may might must shall whether yes than per via among within
""".split())
# negations are content: "no change" must not be supported by "a change"
_KEEP = frozenset({"no", "not", "nor"})
_WORD = re.compile(r"[a-z][a-z0-9\-]*|\d+(?:\.\d+)?%?")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w])")


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def content_words(text: str) -> list[str]:
    """Stemmed content words of ``text`` (stop words and ``[n]`` markers removed; negations kept).

    >>> content_words("The patients were not treated with statins [2].")
    ['patient', 'not', 'treat', 'statin']
    """
    words = [w for w in _WORD.findall(strip_citations(text).lower()) if w in _KEEP or w not in STOPWORDS]
    return [w if not w[0].isalpha() else _stemmer().stemWord(w) for w in words]


def numbers(text: str) -> set[str]:
    """Numbers mentioned in ``text`` (normalised: ``2.50`` -> ``2.5``, ``1,000`` -> ``1000``).

    >>> sorted(numbers("HbA1c 9.0% on 2019-03-01, 1,000 mg [3]"))
    ['01', '03', '1000', '2019', '9']
    """
    out = set()
    for m in _NUMBER.finditer(strip_citations(text)):
        raw = m.group(0).replace(",", "")
        if "." in raw:
            raw = raw.rstrip("0").rstrip(".")
        out.add(raw)
    return out


def lexical_recall(sentence: str, evidence: str) -> float:
    """Share of the sentence's content words found in the evidence (1.0 for an empty sentence)."""
    words = content_words(sentence)
    if not words:
        return 1.0
    have = set(content_words(evidence))
    return sum(w in have for w in words) / len(words)


class SupportScorer:
    """Scores sentences against their cited evidence (see the module docstring for the formula)."""

    def __init__(self, encoder: TokenEncoder | None = None, *, threshold: float = DEFAULT_THRESHOLD,
                 maxsim_floor: float = MAXSIM_FLOOR) -> None:
        self.encoder = encoder
        self.threshold = threshold
        self.maxsim_floor = maxsim_floor
        self._encoded: dict[str, Any] = {}  # evidence text -> token vectors (a scorer serves one answer)

    @property
    def name(self) -> str:
        return "lexical+maxsim+numbers" if self.encoder is not None else "lexical+numbers"

    def maxsim(self, sentence: str, evidence: Sequence[str]) -> float:
        """Mean over the sentence's tokens of the best cosine with any evidence token (0 without an encoder)."""
        if self.encoder is None or not evidence:
            return 0.0
        import numpy as np

        # content tokens only: an encoder's [CLS]/[SEP] markers match each other in any two texts
        strip = getattr(self.encoder, "strip_markers", lambda v: v)
        q = strip(self.encoder.encode_queries([strip_citations(sentence)])[0]).astype(np.float32)
        missing = [t for t in dict.fromkeys(evidence) if t not in self._encoded]
        if missing:  # each evidence text is encoded once, however many sentences cite it
            self._encoded.update(zip(missing, map(strip, self.encoder.encode_documents(missing)), strict=True))
        docs = [self._encoded[t].astype(np.float32) for t in evidence if len(self._encoded[t])]
        if not len(q) or not docs:
            return 0.0
        return float((q @ np.concatenate(docs).T).max(axis=1).mean())

    def score(self, sentence: str, evidence: Sequence[str]) -> tuple[float, str]:
        """``(support, note)`` of ``sentence`` against the texts of the evidence it cites."""
        if not evidence:
            return 0.0, "no citation"
        joined = "\n".join(evidence)
        value = lexical_recall(sentence, joined)
        if self.encoder is not None:
            sim = self.maxsim(sentence, evidence)
            value = 0.5 * value + 0.5 * min(1.0, max(0.0, (sim - self.maxsim_floor) / (1 - self.maxsim_floor)))
        nums = numbers(sentence)
        note = ""
        if nums:
            have = numbers(joined)
            missing = sorted(nums - have)
            value *= (len(nums) - len(missing)) / len(nums)
            if missing:
                note = "numbers not in the cited evidence: " + ", ".join(missing)
        return value, note

    def supported(self, value: float) -> bool:
        return value >= self.threshold


__all__ = ["DEFAULT_THRESHOLD", "STOPWORDS", "SupportScorer", "content_words", "lexical_recall", "numbers"]
