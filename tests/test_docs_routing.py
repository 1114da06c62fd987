"""docs/performance.md's routing table states the lines `models/skip/routing.py` holds: every
line, with its current value, and no other."""

import re
from pathlib import Path

from models.skip import routing

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def documented() -> dict[str, str]:
    text = DOC.read_text()
    section = text[text.index("## Routing"):text.index("## CPU")]
    return dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+?) \|", section, flags=re.M))


def test_the_routing_table_matches_the_routing_module():
    lines = {name: value for name, value in vars(routing).items() if name.isupper()}
    table = documented()
    assert set(table) == set(lines)
    for name, value in lines.items():
        assert float(table[name]) == float(value), name
