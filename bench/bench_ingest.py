"""Indexing wall time and peak RAM on the shared FHIR folders (synthea-fhir + synthea-r4).

Prints a table and appends it to bench/RESULTS.md. Run: `make bench` or
`.venv/bin/python bench/bench_ingest.py [--sources DIR ...]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from clinrag.data.readers import read_records
from clinrag.data.report import ErrorSink
from clinrag.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sources", nargs="*", type=Path,
                    default=[SHARED / "synthea-fhir", SHARED / "synthea-r4"])
    args = ap.parse_args()
    sink = ErrorSink("skip")
    kinds: Counter[str] = Counter()

    def records():
        for r in read_records(args.sources, "fhir", sink):
            kinds[getattr(r, "kind", "image")] += 1
            yield r

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with Engine.create(Path(tmp) / "idx") as eng:
            stats = eng.add(records())
            counts = dict(eng.manifest.counts)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("sources", ", ".join(p.name for p in args.sources)),
        ("documents", counts["documents"]), ("chunks", counts["chunks"]), ("patients", counts["patients"]),
        ("skipped records", sink.skipped),
        ("wall time (s)", f"{wall:.1f}"), ("documents/s", f"{counts['documents'] / wall:.0f}"),
        ("peak RSS (MiB)", f"{peak_mb:.0f}"), ("index size on disk (MiB)", f"{size / 2**20:.1f}"),
        ("kinds", json.dumps(dict(kinds.most_common()))),
    ]
    width = max(len(str(k)) for k, _ in rows)
    table = "\n".join(f"| {k:<{width}} | {v} |" for k, v in rows)
    header = (f"\n## Ingest + lexical index, {dt.date.today()} ({platform.machine()}, "
              f"{__import__('os').cpu_count()} cores)\n\n| what | value |\n|---|---|\n")
    print(header + table)
    if sink.problems:
        print("skipped:", json.dumps(sink.to_dict()["problems"][:5], indent=1))
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(header + table + "\n")
    _ = stats


if __name__ == "__main__":
    main()
