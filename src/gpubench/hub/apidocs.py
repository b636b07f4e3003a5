"""The API reference page (/docs), written from the app's own OpenAPI schema on the
server: no Swagger UI, no script from a CDN, so it reads the same offline, behind a
firewall or in a terminal browser. /openapi.json stays for tools.

``reference(schema)`` flattens the schema into what the template lists: each
operation with its parameters, body and responses, and each component schema with
its fields. Types are Markup with every name escaped and ``$ref``s as links to the
schema's section of the page.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_CODE = re.compile(r"`([^`\n]+)`")
_NO_NUL = r"^[^\x00]*$"          # the app's text parameters: anything a database can hold


def _anchor(name: str) -> str:
    return "schema-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def op_anchor(method: str, path: str) -> str:
    return "op-" + method + "-" + re.sub(r"[^A-Za-z0-9_-]+", "-", path).strip("-")


def prose(text: str | None) -> Markup:
    """Description text as escaped paragraphs; `code` spans become <code>."""
    if not text:
        return Markup("")
    out = []
    for para in re.split(r"\n\s*\n", str(text).strip()):
        body = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(" ".join(para.split()))))
        out.append(f"<p>{body}</p>")
    return Markup("".join(out))


def type_of(schema: Any) -> Markup:
    """A JSON schema as a short type: ``string``, ``array of RunSummary`` (linked),
    ``integer or null``."""
    if not isinstance(schema, dict):
        return Markup("any")
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return Markup(f'<a href="#{escape(_anchor(name))}">{escape(name)}</a>')
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [type_of(s) for s in schema[key]]
            return Markup(" or ").join(parts)
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_of(schema["allOf"][0])
    if "enum" in schema:
        return Markup(" | ").join(Markup("<code>{}</code>").format(v) for v in schema["enum"])
    if "const" in schema:
        return Markup("<code>{}</code>").format(schema["const"])
    t = schema.get("type")
    if isinstance(t, list):
        return Markup(" or ").join(type_of({**schema, "type": x}) for x in t)
    if t == "array":
        return Markup("array of ") + type_of(schema.get("items"))
    if t == "object" and isinstance(schema.get("additionalProperties"), dict):
        return Markup("object of ") + type_of(schema["additionalProperties"])
    text = str(t or "any")
    if schema.get("format"):
        text += f" ({schema['format']})"
    return Markup(escape(text))


def constraints(schema: Any) -> str:
    """Limits a value must keep (length, range, pattern) in words."""
    if not isinstance(schema, dict):
        return ""
    out = []
    for key, word in (("minLength", "at least {} characters"), ("maxLength", "at most {} characters"),
                      ("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"),
                      ("exclusiveMaximum", "< {}"), ("minItems", "at least {} items"),
                      ("maxItems", "at most {} items")):
        if key in schema:
            out.append(word.format(schema[key]))
    if schema.get("pattern") == _NO_NUL:
        out.append("no NUL character")
    elif schema.get("pattern"):
        out.append(f"matches {schema['pattern']}")
    for sub in schema.get("anyOf", ()):
        extra = constraints(sub)
        if extra:
            out.append(extra)
    return "; ".join(out)


def _content(content: Any) -> list[dict]:
    if not isinstance(content, dict):
        return []
    return [{"media_type": mt, "type": type_of((body or {}).get("schema")),
             "description": prose(((body or {}).get("schema") or {}).get("description"))}
            for mt, body in content.items()]


def reference(schema: dict) -> dict:
    """{"title", "version", "description", "operations": [...], "schemas": [...],
    "security": {name: scheme}} for the template."""
    ops = []
    for path, item in (schema.get("paths") or {}).items():
        for method in METHODS:
            op = (item or {}).get(method)
            if not isinstance(op, dict):
                continue
            params = []
            for p in op.get("parameters") or []:
                s = p.get("schema") or {}
                params.append({"name": p.get("name"), "in": p.get("in"), "required": bool(p.get("required")),
                               "type": type_of(s), "default": s.get("default"),
                               "constraints": constraints(s),
                               "description": prose(p.get("description") or s.get("description"))})
            body = op.get("requestBody") or {}
            responses = []
            for code, resp in (op.get("responses") or {}).items():
                resp = resp or {}
                responses.append({"code": code, "description": prose(resp.get("description")),
                                  "content": _content(resp.get("content"))})
            ops.append({"method": method.upper(), "path": path, "anchor": op_anchor(method, path),
                        "summary": op.get("summary") or "", "description": prose(op.get("description")),
                        "params": params, "security": [name for req in op.get("security") or [] for name in req],
                        "body": {"required": bool(body.get("required")),
                                 "description": prose(body.get("description")),
                                 "content": _content(body.get("content"))} if body else None,
                        "responses": responses})
    schemas = []
    components = schema.get("components") or {}
    for name, s in sorted((components.get("schemas") or {}).items()):
        required = set(s.get("required") or [])
        fields = [{"name": f, "type": type_of(fs), "required": f in required,
                   "constraints": constraints(fs), "description": prose((fs or {}).get("description"))}
                  for f, fs in (s.get("properties") or {}).items()]
        schemas.append({"name": name, "anchor": _anchor(name), "description": prose(s.get("description")),
                        "fields": fields, "extra": s.get("additionalProperties") is True})
    info = schema.get("info") or {}
    return {"title": info.get("title") or "API", "version": info.get("version") or "",
            "description": prose(info.get("description")), "operations": ops, "schemas": schemas,
            "security": components.get("securitySchemes") or {}}
