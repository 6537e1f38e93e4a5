"""docs/api.md, the API guide, covers every endpoint of the generated OpenAPI schema."""

from __future__ import annotations

import re
from pathlib import Path

from drf_spectacular.generators import SchemaGenerator

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "api.md").read_text()
METHODS = {"get", "post", "put", "patch", "delete"}
# A row of the guide's endpoint table: | `POST /api/v1/tasks/` | write | ... |
TABLE_ROW = re.compile(r"^\| `([A-Z]+ /api/\S+)` \|", re.MULTILINE)


def schema_endpoints() -> set[str]:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return {f"{m.upper()} {path}" for path, ops in paths.items() for m in ops if m in METHODS}


def test_the_guide_names_every_endpoint_of_the_schema_with_its_method() -> None:
    endpoints = schema_endpoints()

    assert len(endpoints) > 20, "the schema lost its endpoints; the check would prove nothing"
    missing = sorted(e for e in endpoints if e not in GUIDE)
    assert not missing, f"docs/api.md does not mention: {missing}"


def test_every_endpoint_in_the_guides_table_is_in_the_schema() -> None:
    listed = set(TABLE_ROW.findall(GUIDE))

    assert listed == schema_endpoints()
