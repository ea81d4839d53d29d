"""Read one value out of `terraform output -json` for a Cloud Build shell step.

    python -m ops.deploy_outputs outputs.json gke_cluster.name

Strings print as they are, anything else as JSON (`null` for an output that is null, such as
`k8s_values` on Cloud Run). A path that is not there is an error, not an empty string, so a
renamed output stops the build instead of deploying with a blank.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class MissingOutput(KeyError):
    pass


def lookup(outputs: dict[str, Any], path: str) -> Any:
    """The value at a dotted path; `terraform output -json`'s {"value": ...} wrappers unwrapped."""
    first, *rest = path.split(".")
    if first not in outputs:
        raise MissingOutput(f"no output {first!r} (have: {', '.join(sorted(outputs))})")
    node = outputs[first]
    if isinstance(node, dict) and "value" in node and "type" in node:
        node = node["value"]
    for part in rest:
        if not isinstance(node, dict) or part not in node:
            raise MissingOutput(f"{path}: no {part!r} here")
        node = node[part]
    return node


def render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m ops.deploy_outputs OUTPUTS_JSON DOTTED.PATH", file=sys.stderr)
        return 2
    try:
        print(render(lookup(json.loads(Path(args[0]).read_text()), args[1])))
    except MissingOutput as exc:
        print(f"deploy_outputs: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
