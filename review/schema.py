"""Print the JSON Schema of review protocols: ``python -m clinrag.review.schema > docs/review-protocol.schema.json``."""

from __future__ import annotations

import json
import sys

from clinrag.review.protocol import protocol_json_schema


def main() -> None:
    sys.stdout.write(json.dumps(protocol_json_schema(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
