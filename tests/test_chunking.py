"""Chunking: exact spans, full coverage, overlap, stable ids and section detection (on real notes too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinrag.data.chunking import chunk_document, detect_sections, section_name
from clinrag.data.readers import read_records
from clinrag.data.schema import Chunk, Document, Section
from clinrag.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FHIR_FILE = SHARED / "synthea-fhir" / "Alva958_Dickinson688_742fc10a-c565-f636-3c05-5dcd28672194.json"
PQA = SHARED / "pubmedqa" / "pqal_dev.json"
SAMPLE_FHIR = ROOT / "data" / "samples" / "fhir"

needs_shared = pytest.mark.skipif(not FHIR_FILE.exists() or not PQA.exists(),
                                  reason=f"shared data not present at {SHARED} (see shared/README.md)")

CLINICAL = """Progress note 2021-03-04
CHIEF COMPLAINT: chest pain for two days.
History of Present Illness
58 year old man with exertional chest pain radiating to the left arm, relieved by rest.
PAST MEDICAL HISTORY: hypertension, hyperlipidemia.
Medications:
- lisinopril 10 mg daily
- atorvastatin 40 mg nightly
ASSESSMENT AND PLAN
Stable angina. Start aspirin; stress test.
DISCHARGE DIAGNOSIS: stable angina
"""


def check_invariants(doc: Document, chunks: list[Chunk], max_words: int) -> None:
    """Exact spans, no surrounding whitespace, at most max_words words, every non-space char covered."""
    covered = bytearray(len(doc.text))
    for i, c in enumerate(chunks):
        start, end = c.span
        assert doc.text[start:end] == c.text and c.text == c.text.strip() and c.text
        assert len(c.text.split()) <= max_words
        assert c.position == i and c.doc_id == doc.id
        covered[start:end] = b"\x01" * (end - start)
    missing = [m.start() for m in re.finditer(r"\S", doc.text) if not covered[m.start()]]
    assert not missing, f"uncovered characters at {missing[:5]}"


def test_windows_overlap_and_coverage():
    words = [f"w{i}" for i in range(503)]
    doc = Document(id="long", text="  " + "  \n".join(" ".join(words[i:i + 7]) for i in range(0, 503, 7)) + "\n")
    chunks = chunk_document(doc, max_words=100, overlap_words=20)
    check_invariants(doc, chunks, 100)
    assert [c.text.split()[0] for c in chunks] == ["w0", "w80", "w160", "w240", "w320", "w400", "w480"]
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.text.split()[-20:] == b.text.split()[:20]
    assert chunks[-1].text.split()[-1] == "w502"
    no_overlap = chunk_document(doc, max_words=100, overlap_words=0)
    assert [len(c.text.split()) for c in no_overlap] == [100, 100, 100, 100, 100, 3]


def test_stable_ids_and_sections_are_independent():
    doc = Document(id="n1", text=CLINICAL, kind="note", patient_id="p1")
    first = chunk_document(doc)
    assert [c.id for c in first] == [c.id for c in chunk_document(doc)]
    changed = Document(id="n1", text=CLINICAL.replace("stress test", "stress echo"), kind="note", patient_id="p1")
    second = chunk_document(changed)
    same = [a.id == b.id for a, b in zip(first, second, strict=True)]
    assert same == [c.section != "assessment and plan" for c in first]
    assert all(c.patient_id == "p1" and c.kind == "note" for c in first)


def test_clinical_headers_detected_and_normalised():
    doc = Document(id="n1", text=CLINICAL)
    chunks = chunk_document(doc, max_words=50, overlap_words=5)
    check_invariants(doc, chunks, 50)
    assert [c.section for c in chunks] == ["", "chief complaint", "history of present illness",
                                           "past medical history", "medications", "assessment and plan",
                                           "discharge diagnosis"]
    assert chunks[0].text == "Progress note 2021-03-04"
    assert chunks[4].text.startswith("Medications:") and chunks[4].text.endswith("atorvastatin 40 mg nightly")
    assert section_name("## History of Present Illness:") == "history of present illness"
    # "Plan" inside a sentence is not a header; on its own line it is.
    assert [n for n, _, _ in detect_sections("We discussed the plan today.\nplan\nrest")] == ["plan"]


def test_packing_without_section_split():
    doc = Document(id="n1", text=CLINICAL)
    packed = chunk_document(doc, max_words=40, overlap_words=5, split_sections=False)
    check_invariants(doc, packed, 40)
    assert len(packed) < len(chunk_document(doc, max_words=40, overlap_words=5))
    assert packed[0].section == "" and packed[0].span[0] == 0
    assert len(chunk_document(doc, max_words=500, split_sections=False)) == 1


def test_given_sections_are_used_and_gaps_kept():
    text = "Intro words here.\n\nBackground text.\n\nResults text."
    sections = (Section("background", 19, 35), Section("results", 37, 50))
    doc = Document(id="a", text=text, sections=sections)
    chunks = chunk_document(doc)
    check_invariants(doc, chunks, 180)
    assert [(c.section, c.text) for c in chunks] == [("", "Intro words here."), ("background", "Background text."),
                                                     ("results", "Results text.")]


def test_empty_and_bad_settings():
    assert chunk_document(Document(id="e", text="")) == []
    assert chunk_document(Document(id="e", text=" \n\t ")) == []
    with pytest.raises(ConfigError):
        chunk_document(Document(id="e", text="x"), max_words=10, overlap_words=10)


@needs_shared
def test_real_synthea_note_sections():
    notes = [d for d in read_records([FHIR_FILE]) if d.kind == "note"]
    chunks = chunk_document(notes[0])
    check_invariants(notes[0], chunks, 180)
    assert [c.section for c in chunks] == ["", "chief complaint", "history of present illness", "social history",
                                           "allergies", "medications", "assessment and plan"]
    assert chunks[0].text == "1998-04-29"
    plan = chunks[-1]
    assert plan.text.startswith("# Assessment and Plan") and "## Plan" in plan.text and "immunizations" in plan.text
    assert all(c.encounter_id == notes[0].encounter_id and c.timestamp == notes[0].timestamp for c in chunks)


@needs_shared
def test_invariants_on_real_corpora():
    docs = [d for d in read_records([PQA, SAMPLE_FHIR]) if isinstance(d, Document)]
    for d in docs:
        for max_words, overlap, split in ((180, 30, True), (24, 6, False)):
            chunks = chunk_document(d, max_words=max_words, overlap_words=overlap, split_sections=split)
            check_invariants(d, chunks, max_words)
    abstract = next(d for d in docs if d.kind == "abstract")
    names = [c.section for c in chunk_document(abstract)]
    assert names == [s.name for s in abstract.sections]
