"""A human page for the API, rendered from the OpenAPI document on the server: plain HTML and
inline CSS, no script and nothing from a CDN, so it works offline."""

from __future__ import annotations

import functools
import json
from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.3rem;margin-top:2.5rem}
.op{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.m{display:inline-block;min-width:4rem;font-weight:bold;font-family:monospace}
.path{font-family:monospace;font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.85rem}
"""


@functools.lru_cache(maxsize=4)
def _render(document_json: str) -> str:
    doc: dict[str, Any] = json.loads(document_json)
    info = doc.get("info", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info.get('title', 'API'))} API</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))} API v{escape(str(info.get('version', '')))}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        "<p>Authenticate with <code>Authorization: Bearer &lt;api key&gt;</code>. "
        "The machine-readable document is at <a href='openapi.json'>/openapi.json</a>.</p>",
        "<h2>Operations</h2>",
    ]
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            parts.append("<div class='op'>")
            parts.append(f"<span class='m'>{escape(method.upper())}</span> <span class='path'>{escape(path)}</span>")
            parts.append(f"<p>{escape(op.get('summary', ''))}</p>")
            if op.get("parameters"):
                parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>")
                for p in op["parameters"]:
                    parts.append(
                        f"<tr><td>{escape(p['name'])}</td><td>{escape(p['in'])}</td>"
                        f"<td>{'yes' if p.get('required') else 'no'}</td>"
                        f"<td><code>{escape(json.dumps(p.get('schema', {})))}</code></td></tr>"
                    )
                parts.append("</table>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                parts.append(f"<p>Body: {_schema_link(body)}</p>")
            parts.append("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>")
            for status, response in op.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                parts.append(
                    f"<tr><td>{escape(status)}</td><td>{escape(response.get('description', ''))}</td>"
                    f"<td>{_schema_link(schema)}</td></tr>"
                )
            parts.append("</table></div>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        parts.append(f"<h3 id='{escape(name)}'>{escape(name)}</h3>")
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            parts.append("<table><tr><th>field</th><th>required</th><th>type</th><th>description</th></tr>")
            for field, sub in props.items():
                parts.append(
                    f"<tr><td><code>{escape(field)}</code></td><td>{'yes' if field in required else 'no'}</td>"
                    f"<td>{_type_of(sub)}</td><td>{escape(sub.get('description', ''))}</td></tr>"
                )
            parts.append("</table>")
        parts.append(
            f"<details><summary>JSON schema</summary><pre>{escape(json.dumps(schema, indent=2))}</pre></details>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def render_docs(document: dict[str, Any]) -> str:
    return _render(json.dumps(document, sort_keys=True))


def _schema_link(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f"<a href='#{escape(name)}'>{escape(name)}</a>"
    return escape(schema.get("type", "")) if schema else ""


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return _schema_link(schema)
    if "anyOf" in schema:
        return " or ".join(_type_of(s) for s in schema["anyOf"])
    kind = escape(str(schema.get("type", "any")))
    if "enum" in schema:
        kind += " (" + ", ".join(escape(json.dumps(v)) for v in schema["enum"]) + ")"
    if schema.get("type") == "array" and "items" in schema:
        kind += " of " + _type_of(schema["items"])
    bounds = [f"{k} {schema[k]}" for k in ("minimum", "maximum", "minLength", "maxLength", "multipleOf") if k in schema]
    return kind + (f" [{escape(', '.join(bounds))}]" if bounds else "")
