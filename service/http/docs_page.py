"""/docs: the OpenAPI document rendered on the server as one self-contained
HTML page (no script, no CDN, readable offline). Every fact on it comes from
`openapi.build_spec`; this module only lays them out.
"""

from __future__ import annotations

import functools
import json
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from service.domain.json_schema import Schema
from service.http.openapi import build_spec
from service.settings import Settings

METHOD_ORDER = ("get", "head", "post", "put", "patch", "delete")

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2327;background:#fafafa}
main{max-width:1000px;margin:0 auto;padding:1.5em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ccd;padding-bottom:.2em;margin-top:2em}
section.op{background:#fff;border:1px solid #dde;border-radius:6px;padding:.6em 1em;
margin:1em 0}
h3{margin:.3em 0;font-family:ui-monospace,monospace;font-size:1.05em}
.m{display:inline-block;min-width:4.5em;padding:.1em .4em;border-radius:4px;color:#fff;
text-align:center;margin-right:.5em}
.get,.head{background:#2a6fb0}.post{background:#2e8b57}.put{background:#b7791f}
.delete{background:#b03a2e}
table{border-collapse:collapse;width:100%;margin:.4em 0}
th,td{border:1px solid #e2e2ea;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f1f1f6}code{font-family:ui-monospace,monospace;font-size:.92em}
.lock{font-size:.85em;color:#555}.s{font-family:ui-monospace,monospace;font-weight:bold}
ul.toc{columns:2;list-style:none;padding-left:0}ul.toc li{margin:.15em 0}
"""


def _text(text: str) -> str:
    """Escaped prose, with `code` spans as in the descriptions."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _resolve(spec: dict[str, Any], schema: Schema) -> tuple[str | None, Schema]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[1]
        return name, spec["components"]["schemas"][name]
    return None, schema


def _type_text(spec: dict[str, Any], schema: Schema) -> str:
    """One line of HTML: the type and every constraint of a schema."""
    name, resolved = _resolve(spec, schema)
    if name is not None:
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    parts: list[str] = []
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema and "type" not in schema:
            joined = " | " if key != "allOf" else " &amp; "
            parts.append(joined.join(_type_text(spec, s) for s in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        parts.append(" or ".join(escape(k) for k in kind))
    elif kind == "array":
        parts.append("array of " + _type_text(spec, schema.get("items", {})))
    elif kind == "object" and "properties" in schema:
        parts.append("object with " + ", ".join(
            f"<code>{escape(k)}</code>: {_type_text(spec, v)}"
            for k, v in schema["properties"].items()))
    elif kind:
        parts.append(escape(kind))
    facts = []
    for key in ("format", "pattern", "minimum", "maximum", "exclusiveMinimum", "minLength",
                "maxLength", "minItems", "default"):
        if key in schema:
            facts.append(f"{key} <code>{escape(json.dumps(schema[key], ensure_ascii=False))}"
                         "</code>")
    if "const" in schema:
        facts.append(f"always <code>{escape(json.dumps(schema['const']))}</code>")
    if "enum" in schema:
        facts.append("one of " + ", ".join(f"<code>{escape(json.dumps(v))}</code>"
                                           for v in schema["enum"]))
    if "not" in schema and "enum" in schema["not"]:
        facts.append("not " + ", ".join(f"<code>{escape(json.dumps(v))}</code>"
                                        for v in schema["not"]["enum"]))
    text = " ".join(parts) or "any"
    return text + (f" ({'; '.join(facts)})" if facts else "")


def _schema_block(spec: dict[str, Any], schema: Schema) -> str:
    """A schema as HTML: a link to a named one, or its fields."""
    name, resolved = _resolve(spec, schema)
    if name is not None:
        return f"<p>{_type_text(spec, schema)}</p>"
    if resolved.get("type") == "object" and "properties" in resolved:
        return _fields_table(spec, resolved)
    return f"<p>{_type_text(spec, resolved)}</p>"


def _fields_table(spec: dict[str, Any], schema: Schema) -> str:
    required = set(schema.get("required", []))
    rows = [
        f"<tr><td><code>{escape(field)}</code></td><td>{'yes' if field in required else ''}"
        f"</td><td>{_type_text(spec, sub)}</td>"
        f"<td>{_text(sub.get('description', ''))}</td></tr>"
        for field, sub in schema.get("properties", {}).items()
    ]
    extra = ""
    if schema.get("additionalProperties") is False:
        extra = "<p>No other fields are accepted.</p>"
    return ("<table><tr><th>field</th><th>required</th><th>type</th><th>description</th>"
            "</tr>" + "".join(rows) + "</table>" + extra)


def _content_html(spec: dict[str, Any], content: dict[str, Any]) -> str:
    out = []
    for media, body in content.items():
        out.append(f"<p><code>{escape(media)}</code></p>")
        if "schema" in body:
            out.append(_schema_block(spec, body["schema"]))
    return "".join(out)


def _operation_html(spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    anchor = f"op-{op['operationId']}"
    secured = op.get("security", spec.get("security")) != []
    out = [f'<section class=op id="{escape(anchor)}">',
           f'<h3><span class="m {method}">{method.upper()}</span>{escape(path)}</h3>',
           f"<p><b>{_text(op.get('summary', ''))}</b>"
           + (" <span class=lock>(Bearer API key)</span>" if secured
              else " <span class=lock>(no authentication)</span>") + "</p>"]
    if op.get("description"):
        out.append(f"<p>{_text(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        out.append("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th>"
                   "<th>type</th><th>description</th></tr>")
        for p in params:
            out.append(f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}"
                       f"</td><td>{'yes' if p.get('required') else ''}</td>"
                       f"<td>{_type_text(spec, p['schema'])}</td>"
                       f"<td>{_text(p.get('description', ''))}</td></tr>")
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        out.append("<h4>Request body</h4>" + _content_html(spec, body["content"]))
    out.append("<h4>Responses</h4>")
    for status, response in op["responses"].items():
        out.append(f"<p><span class=s>{escape(status)}</span> "
                   f"{_text(response['description'])}</p>")
        headers = response.get("headers", {})
        if headers:
            items = ", ".join(
                f"<code>{escape(h)}</code>{'' if v.get('required') else ' (optional)'}"
                for h, v in headers.items())
            out.append(f"<p>Headers: {items}</p>")
        if response.get("content"):
            out.append(_content_html(spec, response["content"]))
    out.append("</section>")
    return "".join(out)


def render_docs(spec: dict[str, Any]) -> str:
    info = spec["info"]
    toc, sections = [], []
    by_tag: dict[str, list[str]] = {t["name"]: [] for t in spec.get("tags", [])}
    for path, item in spec["paths"].items():
        for method in METHOD_ORDER:
            op = item.get(method)
            if op is None:
                continue
            toc.append(f'<li><a href="#op-{escape(op["operationId"])}"><span class="m '
                       f'{method}">{method.upper()}</span><code>{escape(path)}</code></a></li>')
            html = _operation_html(spec, path, method, op)
            by_tag.setdefault(op.get("tags", ["Other"])[0], []).append(html)
    for tag, ops in by_tag.items():
        if ops:
            sections.append(f"<h2>{escape(tag)}</h2>" + "".join(ops))
    schemas = [
        f'<section class=op id="schema-{escape(name)}"><h3>{escape(name)}</h3>'
        + (f"<p>{_text(s['description'])}</p>" if s.get("description") else "")
        + (_fields_table(spec, s) if "properties" in s else f"<p>{_type_text(spec, s)}</p>")
        + "</section>"
        for name, s in spec["components"]["schemas"].items()
    ]
    server = spec["servers"][0]["url"] if spec.get("servers") else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(info['title'])} API {escape(info['version'])}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f"<h1>{escape(info['title'])} API</h1>"
        f"<p>Version {escape(info['version'])}, OpenAPI {escape(spec['openapi'])}"
        f" (<a href=\"openapi.json\">openapi.json</a>). Server: <code>{escape(server)}"
        "</code></p>"
        f"<p>{_text(info.get('description', ''))}</p>"
        "<h2>Endpoints</h2><ul class=toc>" + "".join(toc) + "</ul>"
        + "".join(sections)
        + "<h2>Schemas</h2>" + "".join(schemas)
        + "</main></body></html>"
    )


@functools.lru_cache(maxsize=8)
def _docs_html(settings: Settings) -> str:
    return render_docs(build_spec(settings))


async def docs_page(request: Request) -> Response:
    return HTMLResponse(_docs_html(request.app.state.settings))
