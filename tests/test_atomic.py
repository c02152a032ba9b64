"""A write cut short (exception, Ctrl-C, SIGKILL, a crash mid-commit) leaves the last commit
intact and readable, and the next write resumes or rolls back cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from clinrag import Document, Engine
from clinrag.indexing import writer


def _docs(n: int, start: int = 0, word: str = "fever") -> list[Document]:
    return [Document(id=f"d{i}", text=f"{word} record number {i} cough dyspnoea", patient_id=f"p{i % 3}")
            for i in range(start, start + n)]


def _snapshot(path):
    with Engine.open(path) as eng:
        return eng.manifest.counts, [h.chunk_id for h in eng.search("fever cough", k=50)]


@pytest.fixture()
def base(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "FLUSH_CHUNKS", 5)  # many small batches so a cut lands mid-write
    path = tmp_path / "idx"
    with Engine.create(path) as eng:
        eng.add(_docs(20))
    return path


def _exploding(docs, after):
    for i, d in enumerate(docs):
        if i == after:
            raise RuntimeError("disk on fire")
        yield d


def test_exception_mid_add_keeps_last_commit_then_resumes(base):
    before = _snapshot(base)
    with Engine.open(base) as eng, pytest.raises(RuntimeError):
        eng.add(_exploding(_docs(30, start=20, word="rash"), after=17))
    assert _snapshot(base) == before  # the half-written batch is invisible
    with Engine.open(base) as eng:
        stats = eng.add(_docs(30, start=20, word="rash"))
        assert stats.resumed
        assert stats.documents_unchanged + stats.documents_added == 30
        assert stats.documents_unchanged == 15  # three full batches of 5 were written before the cut
        assert eng.manifest.counts["documents"] == 50 and eng.manifest.counts["chunks"] == 50
        ids = [h.doc_id for h in eng.search("rash", k=100)]
        assert len(ids) == len(set(ids)) == 30  # no duplicates from the cut run


def test_delete_after_cut_add_rolls_back_instead(base):
    before = _snapshot(base)
    with Engine.open(base) as eng, pytest.raises(RuntimeError):
        eng.add(_exploding(_docs(30, start=20, word="rash"), after=12))
    with Engine.open(base) as eng:
        assert eng.delete(["d0"]) == 1
        assert eng.search("rash") == []  # the cut add was rolled back, not committed by the delete
        assert eng.manifest.counts["documents"] == before[0]["documents"] - 1


def test_crash_during_commit_keeps_old_manifest(base, monkeypatch):
    before = _snapshot(base)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "write_manifest", boom)
    with Engine.open(base) as eng, pytest.raises(KeyboardInterrupt):
        eng.add(_docs(5, start=100, word="rash"))
    assert _snapshot(base) == before
    monkeypatch.undo()
    with Engine.open(base) as eng:
        eng.add(_docs(5, start=100, word="rash"))
        assert len(eng.search("rash", k=20)) == 5
    assert len(list(base.glob("bm25-*"))) == 1  # the orphan from the failed commit is cleaned up


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from clinrag import Document, Engine
    from clinrag.indexing import writer
    writer.FLUSH_CHUNKS = 5
    path, sig = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job starts with SIGINT ignored
    def docs():
        for i in range(1000, 1100):
            if i == 1040:
                os.kill(os.getpid(), getattr(signal, sig))
            yield Document(id=f"d{i}", text=f"rash record number {i}", patient_id="p1")
    with Engine.open(path) as eng:
        try:
            eng.add(docs())
        except KeyboardInterrupt:
            sys.exit(130)
""")


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_killed_process_leaves_index_readable_and_resumable(base, tmp_path, sig):
    before = _snapshot(base)
    script = tmp_path / "build.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(base), sig], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode in (-signal.SIGKILL, 130), proc.stderr
    assert _snapshot(base) == before
    with Engine.open(base) as eng:
        stats = eng.add(Document(id=f"d{i}", text=f"rash record number {i}", patient_id="p1")
                        for i in range(1000, 1100))
        assert stats.resumed
        assert stats.documents_unchanged >= 30  # work done before the kill is kept
        assert eng.manifest.counts["documents"] == 120
        assert len({h.doc_id for h in eng.search("rash", k=200)}) == 100
    assert os.path.exists(base / "manifest.json")
