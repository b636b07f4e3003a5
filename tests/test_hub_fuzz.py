"""Fuzzing the hub (issue 7): about 5,500 generated requests (10,000 with GPUBENCH_FUZZ_SCALE=2), two invariants.

1. No request gets a 5xx: whatever a client sends, the server answers with a
   status that says whose fault it is (4xx) or success.
2. No upload that is refused leaves anything behind: after every POST the runs and
   records tables hold exactly the runs accepted so far and their records; at the
   end the stored IDs are exactly the accepted IDs and every stored document is the
   one that was uploaded.

The requests (hypothesis; the GET routes and their query parameters are read from
the app itself, so a new route is fuzzed without editing this file):

- uploads: real result documents (``hub_live.make_result_doc``) mutated: fields
  dropped, duplicated (the same key twice in one JSON object), retyped; numbers
  huge, negative, NaN, infinite, with thousands of digits; nesting deeper than the
  limit and deep enough to break a recursive parser; unicode, NUL, lone surrogates,
  markup; wrong ``schema_version``; record lists emptied or repeated; and whole
  bodies that are not JSON, not UTF-8, empty, truncated, another JSON type, or
  padded to within a few bytes of the size limit on either side; missing and wrong
  tokens.
- every GET route with random, boundary and known-good query parameters
  (repeated, unknown, percent-encoded bytes that are not UTF-8).
- every route with a path id: random text, known IDs in other cases, made-up IDs.

Most requests (9,000) go in-process: the app on a SQLite file, called through
httpx's ASGI transport (TestClient's path without its per-request thread hop) with a
256 KiB upload limit so that bodies on either side of it are cheap. About 1,000 go
to ``gpubench hub serve`` over loopback (``hub_live.LiveHub``, default 10 MiB limit),
with a few hand-made raw-socket requests that a client library will not send (a
Content-Length above the limit or longer than the body, chunked bodies over the
limit, a client that hangs up mid-body) and bodies of exactly the limit and one
byte more. The databases live on /dev/shm when it has room (see ``db_dir``).
About 65-75 s on a 2-core machine; ``-s`` prints the counts and timings.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote, quote_from_bytes

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")
pytest.importorskip("hypothesis")

import httpx
import sqlalchemy as sa
from fastapi.routing import APIRoute
from hub_live import API, LiveHub, make_result_doc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gpubench.hub import store
from gpubench.hub import vocabulary as V
from gpubench.hub.app import create_app
from gpubench.hub.auth import create_token
from gpubench.results import SCHEMA_VERSION

pytestmark = pytest.mark.slow

# Requests per part (hypothesis examples: one request each).
# About 5,500 requests in `make test` (CI's 15 minutes on 2 cores leave room for no more);
# GPUBENCH_FUZZ_SCALE=2 runs the 10,000-request sweep (and more for larger factors).
SCALE = float(os.environ.get("GPUBENCH_FUZZ_SCALE", "1"))
IN_PROCESS = {k: int(v * SCALE) for k, v in {"upload": 1800, "query": 1400, "path": 1300}.items()}
LIVE = {"upload": 500, "query": 300, "path": 200}
MIN_REQUESTS = int(5_000 * SCALE)

# The in-process app refuses bodies above this (small, so near-limit bodies are cheap);
# the live server keeps the CLI's default (10 MiB) and gets a few bodies that size.
SMALL_LIMIT = 256 * 1024
MAX_URL = 8000

GPUS = ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S", "AMD Instinct MI300X",
        "Tesla T4", "NVIDIA GeForce RTX 4090")
XSS = ("<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>", "<svg onload=alert(1)>")
HTML_FORBIDDEN = re.compile(rb"<script|<img|<svg onload", re.IGNORECASE)

# No shrinking: the server's database changes with every request, so a "smaller" replay
# runs against another state and can fail for the first failure's leftovers. The first
# failing request is reported as it was (its draws are printed), which is what to debug.
# Requests that once got a 5xx (kept so a regression does not wait for the fuzzer to find it).
REGRESSIONS = [f"{API}/runs?until=9999-12-31", "/runs?until=9999-12-31",     # no day after 9999-12-31
               f"{API}/runs?since=9999-12-31&until=9999-12-31", f"{API}/runs?since=0001-01-01&until=0001-01-01"]

SETTINGS = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck),
            "phases": (Phase.explicit, Phase.generate)}


# ---------------------------------------------------------------- JSON with holes in it

class Marker:
    """A place in a document whose JSON text is written by hand: ``Raw`` text (1e999,
    5,000 digits, 100,000 brackets) or a ``Dup`` object whose keys may repeat. In the
    document it stands as a placeholder string, replaced in the JSON text at the end
    (so the rest of the document is written by json.dumps, fast)."""

    count = 0

    def __init__(self):
        Marker.count += 1
        self.token = f"\x01\x02fuzz-marker-{Marker.count}\x02\x01"


class Raw(Marker):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def __repr__(self):
        return f"Raw({self.text[:40]!r}{'…' if len(self.text) > 40 else ''})"


class Dup(Marker):
    def __init__(self, pairs: list):
        super().__init__()
        self.pairs = pairs

    def __repr__(self):
        return f"Dup({[k for k, _ in self.pairs]!r})"


def encode(value, markers: dict, ascii_only: bool) -> str:
    """JSON text of ``value`` with the markers' placeholders replaced. NaN and Infinity
    come out as the tokens Python's parser accepts (and the hub must refuse)."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    for token, marker in markers.items():
        quoted = json.dumps(token)
        if quoted not in text:
            continue
        if isinstance(marker, Raw):
            inner = marker.text
        else:
            inner = "{" + ",".join(f"{encode(str(k), markers, ascii_only)}:{encode(v, markers, ascii_only)}"
                                   for k, v in marker.pairs) + "}"
        text = text.replace(quoted, inner)
    return text


def to_bytes(value, markers: dict, ascii_only: bool) -> bytes:
    # surrogatepass: a lone surrogate written raw becomes bytes that are not UTF-8 (400),
    # written as \\ud800 it is JSON whose string is not text (422).
    return encode(value, markers, ascii_only).encode("utf-8", "surrogatepass")


def paths_of(doc, prefix=()) -> list[tuple]:
    """Every container and leaf path of a document (lists: their first 3 items)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths_of(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += paths_of(v, prefix + (i,))
    return out


def get_at(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def set_at(doc, path, value):
    if not path:
        return value
    get_at(doc, path[:-1])[path[-1]] = value
    return doc


def copy_json(value):
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------- strategies

SPECIAL_NUMBERS = [math.nan, math.inf, -math.inf, -1, -1.5, -1e-300, 0, -0.0, 1e-320, 1e308, 1.7976931348623157e308,
                   2**53 + 1, 2**63, 2**64, 2**64 + 1, -(2**64) - 1, 10**30, -(10**30), 1e6, 1e15,
                   Raw("1e999"), Raw("-1e999"), Raw("1" * 5000), Raw("-" + "9" * 4400), Raw("1.0e-99999"),
                   Raw("0x10"), Raw("01"), Raw("+1"), Raw(".5"), Raw("1."), Raw("NaN"), Raw("-Infinity")]
SPECIAL_STRINGS = ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ufeff", "\u202eevil", "\u2028\u2029",
                   "x" * (V.NAME_MAX_CHARS - 1), "x" * V.NAME_MAX_CHARS, "x" * (V.NAME_MAX_CHARS + 1),
                   "é" * V.NAME_MAX_CHARS, "💥" * 120, "y" * (V.TEXT_MAX_CHARS + 1), "../../etc/passwd", "%00",
                   "{{ 7*7 }}", "{% raw %}", "NaN", "null", "1", "'; DROP TABLE runs; --", *XSS,
                   "Z̴̡̛̛a̵̢l̶g̵o", "\t\n\r", "ok", "failed", "skipped", "cpu", "cuda"]
SCHEMA_VERSIONS = [0, -1, 1, 2, SCHEMA_VERSION + 1, 99, 2**64, "2", "", 2.0, 1.5, True, False, None, [], {},
                   Raw("2.0e0"), Raw("2e0"), Raw("1" * 5000)]
SMALL_TEXT = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | SMALL_TEXT
    | st.sampled_from(SPECIAL_STRINGS),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(SMALL_TEXT, kids, max_size=4),
    max_leaves=12)


def nested(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


DEPTHS = [V.MAX_NESTING - 8, V.MAX_NESTING - 1, V.MAX_NESTING, V.MAX_NESTING + 1, V.MAX_NESTING + 5,
          999, 1001, 5_000, 50_000]


def _reachable(doc, path) -> bool:
    """Is ``path`` still a place in ``doc`` (earlier mutations may have removed or replaced it)?"""
    cur = doc
    for p in path:
        if (isinstance(cur, dict) and isinstance(p, str) and p in cur) or \
                (isinstance(cur, list) and isinstance(p, int) and p < len(cur)):
            cur = cur[p]
        else:
            return False
    return True


def mutate(data, doc, base_paths, markers: dict):
    """Apply 1 to 3 mutations to ``doc`` (a copy); returns the new document-like value.
    Hand-written JSON goes in as placeholders registered in ``markers``."""

    def put(value):
        if isinstance(value, Marker):
            markers[value.token] = value
            return value.token
        return value

    for _ in range(data.draw(st.integers(1, 3), label="n_mutations")):
        op = data.draw(st.sampled_from(["drop", "retype", "number", "string", "nest", "duplicate", "schema",
                                        "records", "keep"]), label="op")
        path = base_paths[data.draw(st.integers(0, len(base_paths) - 1), label="path")]
        if not _reachable(doc, path):
            continue
        target = get_at(doc, path)
        if op == "drop" and path:
            del get_at(doc, path[:-1])[path[-1]]
        elif op == "retype":
            doc = set_at(doc, path, data.draw(json_values, label="value"))
        elif op == "number":
            doc = set_at(doc, path, put(data.draw(st.sampled_from(SPECIAL_NUMBERS) | st.floats() | st.integers(),
                                                  label="number")))
        elif op == "string":
            doc = set_at(doc, path, data.draw(st.sampled_from(SPECIAL_STRINGS) | st.text(max_size=300),
                                              label="string"))
        elif op == "nest":
            doc = set_at(doc, path, put(nested(data.draw(st.sampled_from(DEPTHS), label="depth"),
                                               data.draw(st.sampled_from(["list", "dict"]), label="kind"))))
        elif op == "duplicate" and isinstance(target, dict) and target:
            pairs = list(target.items())
            key = data.draw(st.sampled_from([k for k, _ in pairs]), label="dup_key")
            again = data.draw(st.sampled_from(["same", "other"]), label="dup_value")
            extra = (key, target[key] if again == "same" else data.draw(json_values, label="dup_to"))
            pairs.insert(data.draw(st.integers(0, len(pairs)), label="dup_at"), extra)
            doc = set_at(doc, path, put(Dup(pairs)))
        elif not isinstance(doc, dict):
            continue
        elif op == "schema":
            doc["schema_version"] = put(data.draw(st.sampled_from(SCHEMA_VERSIONS), label="schema_version"))
        elif op == "records" and isinstance(doc.get("records"), list):
            recs = doc["records"]
            how = data.draw(st.sampled_from(["empty", "repeat", "many", "reverse", "not_objects"]),
                            label="records_op")
            if how == "empty":
                doc["records"] = []
            elif how == "repeat" and recs:
                doc["records"] = recs + [copy_json(recs[0])]
            elif how == "many" and recs:
                doc["records"] = [copy_json(recs[0]) for _ in range(data.draw(st.integers(2, 40)))]
            elif how == "reverse":
                doc["records"] = recs[::-1]
            else:
                doc["records"] = recs + [data.draw(json_values, label="record")]
        elif op == "keep":
            # A change that keeps the file valid: the upload is new content and is stored.
            doc["run_id"] = data.draw(st.text("0123456789abcdef", min_size=1, max_size=32), label="run_id")
            if isinstance(doc.get("env"), dict) and isinstance(doc["env"].get("host"), dict):
                doc["env"]["host"]["hostname"] = data.draw(st.sampled_from(list(XSS)) | st.text(max_size=60),
                                                           label="hostname")
    return doc


# ---------------------------------------------------------------- targets

class Target:
    """Where requests go and how to look at the database behind it. ``send`` returns
    (status, content-type, body)."""

    name = ""
    limit = 0

    def __init__(self, database_url: str, token: str):
        self.database_url = database_url
        self.token = token
        self.engine = store.create_engine(database_url)
        self.conn = None
        self.requests = 0
        self.statuses: Counter = Counter()

    def send(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, str, bytes]:
        raise NotImplementedError

    def counts(self) -> tuple[int, int]:
        """(runs, records) as committed now (an autocommit connection: no stale snapshot)."""
        if self.conn is None:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return tuple(self.conn.execute(sa.text(
            "SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM records)")).one())

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.engine.dispose()


class InProcess(Target):
    """The app called in this process (httpx's ASGI transport on one event loop: the
    same ASGI path as TestClient, without its thread hop per request)."""

    name = "in-process"

    def __init__(self, database_url: str):
        self.app = create_app(database_url, auto_migrate=True, max_upload_bytes=SMALL_LIMIT)
        with self.app.state.hub.session_factory() as s:
            token = create_token(s, "fuzzer")
        super().__init__(database_url, token)
        self.limit = SMALL_LIMIT
        self.loop = asyncio.new_event_loop()
        # raise_app_exceptions=False: a bug is the 500 the app answers, not an exception here.
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
                                        base_url="http://testserver")

    def send(self, method, path, body=None, headers=None):
        r = self.loop.run_until_complete(self.client.request(method, path, content=body, headers=headers or {}))
        self.requests += 1
        self.statuses[r.status_code] += 1
        return r.status_code, r.headers.get("content-type", ""), r.content

    def close(self):
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        self.app.state.hub.engine.dispose()
        super().close()


class Live(Target):
    name = "live"

    def __init__(self, hub: LiveHub):
        super().__init__(hub.database_url, hub.token)
        self.hub = hub
        self.limit = V.MAX_UPLOAD_BYTES
        self.client = hub.client(token=None)

    def send(self, method, path, body=None, headers=None):
        status, h, data = self.client.request(method, path, body, token=None, headers=headers or {})
        self.requests += 1
        self.statuses[status] += 1
        return status, h.get("content-type", ""), data

    def raw(self, head: bytes, body_parts: list[bytes], *, hang_up: bool = False) -> int | None:
        """One request written by hand on its own connection; the status, or None when the
        server answered nothing (it may close on a body it will not read)."""
        self.requests += 1
        with socket.create_connection(("127.0.0.1", self.hub.port), timeout=30) as s:
            try:
                s.sendall(head)
                for part in body_parts:
                    s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                pass                    # it answered and closed before taking everything: fine
            if hang_up:
                s.shutdown(socket.SHUT_WR)
            data = b""
            try:
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (ConnectionResetError, TimeoutError):
                pass
        if not data.startswith(b"HTTP/1.1 "):
            self.statuses["none"] += 1
            return None
        status = int(data.split(b" ", 2)[1])
        self.statuses[status] += 1
        return status

    def close(self):
        self.client.close()
        super().close()


# ---------------------------------------------------------------- the fuzzer

def get_routes(app) -> list[tuple[str, list[str]]]:
    """(path template, query parameter names) of every GET route of the app, pages
    included (they are not in the OpenAPI schema)."""
    out = []

    def walk(routes, prefix: str):
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:        # FastAPI >= 0.16x keeps included routers as one entry
                walk(included.routes, prefix + getattr(route.include_context, "prefix", ""))
                continue
            if "GET" not in (getattr(route, "methods", None) or ()):
                continue
            names = [p.alias or p.name for p in route.dependant.query_params] if isinstance(route, APIRoute) \
                else []
            out.append((prefix + route.path, names))

    walk(app.routes, "")
    return sorted({(p, tuple(n)) for p, n in out})


class Fuzzer:
    def __init__(self, target: Target, routes, bases: list[dict]):
        self.t = target
        self.routes = routes
        self.bases = bases
        self.texts = [json.dumps(b) for b in bases]
        self.base_paths = [paths_of(b) for b in bases]
        self.accepted: dict[str, dict] = {}         # id -> the parsed document first stored under it
        self.n_records = 0
        self.pool: dict[str, set] = {k: set() for k in
                                     ("id", "gpu", "suite", "benchmark", "metric", "case_id", "host", "date")}
        self.rejected = 0

    # -- uploads

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.t.token}"}

    def post(self, body: bytes, headers: dict, *, expect: set | None = None) -> int:
        status, ctype, data = self.t.send("POST", f"{API}/runs", body, headers)
        assert status < 500, (self.t.name, status, data[:500], body[:300])
        if status in (200, 201):
            answer = json.loads(data)
            rid = answer["id"]
            assert store.ID_PATTERN.match(rid), answer
            # created is true exactly when this content was not stored yet
            assert answer["created"] is (status == 201) is (rid not in self.accepted), (answer, status)
            if rid not in self.accepted:
                doc = json.loads(body)
                self.accepted[rid] = doc
                self.n_records += len(doc["records"])
                self.remember(rid, doc)
        else:
            self.rejected += 1
            assert status in (400, 401, 413, 422), (self.t.name, status, data[:500])
            assert ctype.startswith("application/json"), ctype
            detail = json.loads(data)["detail"]
            assert set(detail) == {"field", "message"} and detail["message"], detail
        if expect is not None:
            assert status in expect, (status, expect, data[:300])
        # Nothing but the accepted runs and their records, after every upload.
        stored, expected = self.t.counts(), (len(self.accepted), self.n_records)
        assert stored == expected, (f"{self.t.name}: (runs, records) stored {stored}, accepted {expected} "
                                    f"after a {status}: {data[:300]!r}; request body {body[:300]!r}")
        return status

    def remember(self, rid: str, doc: dict):
        self.pool["id"].add(rid)
        env = doc.get("env") or {}
        dev = env.get("device") or {}
        for v in (dev.get("name"), store.gpu_key_for(env)):
            if isinstance(v, str):
                self.pool["gpu"].add(v)
        self.pool["suite"].add(doc["suite"])
        if isinstance((env.get("host") or {}).get("hostname"), str):
            self.pool["host"].add(env["host"]["hostname"])
        if isinstance(doc.get("started_at"), str):
            self.pool["date"].update({doc["started_at"], doc["started_at"][:10]})
        for rec in doc["records"]:
            self.pool["benchmark"].add(rec["benchmark"])
            if isinstance(rec.get("case_id"), str):
                self.pool["case_id"].add(rec["case_id"])
            self.pool["metric"].update((rec.get("metrics") or {}).keys())

    def seed(self, n: int):
        """Valid uploads of distinct documents, several GPUs and hosts, so reads have data."""
        for i in range(n):
            doc = make_result_doc(10_000 + i, gpu=GPUS[i % len(GPUS)],
                                  host=XSS[i % len(XSS)] if i % 5 == 0 else None)
            assert self.post(json.dumps(doc).encode(), self.auth()) == 201

    def upload_case(self, data):
        """One POST: a mutated document, or a body or header that is wrong as a whole."""
        i = data.draw(st.integers(0, len(self.bases) - 1), label="base")
        kinds = ["mutated"] * 8 + ["body", "auth"] + (["padded"] if self.t.limit <= SMALL_LIMIT else [])
        kind = data.draw(st.sampled_from(kinds), label="kind")
        headers = self.auth()
        expect = None
        ascii_only = data.draw(st.booleans(), label="ascii_only")
        if kind == "mutated":
            markers: dict = {}
            doc = mutate(data, json.loads(self.texts[i]), self.base_paths[i], markers)
            body = to_bytes(doc, markers, ascii_only)
        elif kind == "body":
            raw = self.texts[i].encode()
            how = data.draw(st.sampled_from(["empty", "blank", "binary", "truncate", "bom", "utf16", "bad_byte",
                                             "other_json", "two_docs", "garbage_after", "deep"]), label="body")
            if how == "empty":
                body = b""
            elif how == "blank":
                body = b" \r\n\t" * data.draw(st.integers(0, 50))
            elif how == "binary":
                body = data.draw(st.binary(max_size=2000), label="bytes")
            elif how == "truncate":
                body = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
            elif how == "bom":
                body = b"\xef\xbb\xbf" + raw
            elif how == "utf16":
                body = raw.decode().encode("utf-16")
            elif how == "bad_byte":
                at = data.draw(st.integers(0, len(raw)), label="at")
                body = raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x80"])) \
                    + raw[at:]
            elif how == "other_json":
                body = to_bytes(data.draw(json_values | st.lists(st.just(self.bases[i]), max_size=2)), {},
                                ascii_only)
            elif how == "two_docs":
                body = raw + b"\n" + raw
            elif how == "garbage_after":
                body = raw + data.draw(st.binary(min_size=1, max_size=20).filter(lambda b: b.strip()))
            else:
                body = nested(data.draw(st.sampled_from(DEPTHS)), data.draw(st.sampled_from(["list", "dict"]))) \
                    .text.encode()
        elif kind == "padded":
            # A stored-or-new valid document padded with whitespace to limit-3 .. limit+3 bytes.
            doc = json.loads(self.texts[i])
            doc["run_id"] = data.draw(st.text("0123456789abcdef", min_size=1, max_size=8), label="run_id")
            raw = json.dumps(doc).encode()
            size = self.t.limit + data.draw(st.integers(-3, 3), label="delta")
            body = raw + b" " * (size - len(raw))
            expect = {413} if len(body) > self.t.limit else {200, 201}
        else:
            body = self.texts[i].encode()
            headers = data.draw(st.sampled_from([
                {}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "},
                {"Authorization": f"Basic {self.t.token}"}, {"Authorization": f"Bearer {self.t.token}x"},
                {"Authorization": f"Bearer {self.t.token[:-1]}"}, {"Authorization": "Bearer " + "A" * 5000},
                {"Authorization": f"Token {self.t.token}"}, {"X-Token": self.t.token},
            ]), label="headers")
            expect = {401}
        if data.draw(st.booleans(), label="odd_content_type"):
            headers = {**headers, "Content-Type": data.draw(st.sampled_from(
                ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1", "", "application/json; charset=utf-16"]))}
        self.post(body, headers, expect=expect)

    # -- reads

    def known(self, data, key: str) -> str:
        values = sorted(self.pool[key])
        return data.draw(st.sampled_from(values), label=key) if values else "x"

    def query_value(self, data, name: str) -> str | None:
        """A query parameter's value, already percent-encoded; None: leave it out."""
        how = data.draw(st.sampled_from(["absent"] * 3 + ["known", "known", "text", "bytes", "number", "date",
                                                          "ids", "long", "empty"]), label=f"{name}_how")
        if how == "absent":
            return None
        if how == "known":
            key = {"ids": "id", "gpu": "gpu", "suite": "suite", "benchmark": "benchmark", "metric": "metric",
                   "case_id": "case_id", "since": "date", "until": "date"}.get(name)
            if key is None:
                return str(data.draw(st.integers(-2, 300), label=name))
            value = self.ids_value(data) if name == "ids" else self.known(data, key)
            return quote(value, safe="")
        if how == "text":
            return quote(data.draw(st.text(max_size=80) | st.sampled_from(SPECIAL_STRINGS), label=name)
                         .encode("utf-8", "surrogatepass"), safe="")
        if how == "bytes":
            return quote_from_bytes(data.draw(st.binary(max_size=60), label=name), safe="")
        if how == "number":
            return quote(str(data.draw(st.integers(-(10**40), 10**40) | st.floats() | st.sampled_from(
                ["NaN", "inf", "-0", "0x10", " 5", "5 ", "1_000", "٣", "1e3", "200", "201", "0", "10000000",
                 "10000001", "00050", "+5"]), label=name)), safe="")
        if how == "date":
            return quote(data.draw(st.sampled_from(
                ["2026-01-01", "2026-13-45", "2026-02-30", "9999-12-31", "0001-01-01", "0000-01-01",
                 "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00", "2026-01-01T00:00:00Z",
                 "2026-01-01T25:00", "-2026-01-01", "2026-W01", "20260101", "yesterday", "2026-01-01 12:00",
                 "2026-01-01T12:00:00.123456789+00:00"]) | st.datetimes().map(lambda d: d.isoformat()),
                label=name), safe="")
        if how == "ids":
            return quote(self.ids_value(data), safe="")
        if how == "long":
            n = data.draw(st.sampled_from([199, 200, 201, 2000, 2001, 5000]), label=f"{name}_len")
            return quote(data.draw(st.sampled_from(["a", "é", "💥", "%", ","]), label=f"{name}_char") * n, safe="")
        return ""

    def ids_value(self, data) -> str:
        ids = sorted(self.pool["id"]) or ["0" * 16]
        n = data.draw(st.integers(0, 6), label="n_ids")
        parts = []
        for _ in range(n):
            how = data.draw(st.sampled_from(["known", "known", "known", "upper", "spaced", "hex", "junk"]))
            rid = data.draw(st.sampled_from(ids))
            parts.append({"known": rid, "upper": rid.upper(), "spaced": f" {rid} ",
                          "hex": data.draw(st.text("0123456789abcdef", min_size=15, max_size=17)),
                          "junk": data.draw(st.text(max_size=20))}[how])
        sep = data.draw(st.sampled_from([",", ",", ", ", ",,", ";"]))
        return sep.join(parts)

    def path_id(self, data) -> str:
        ids = sorted(self.pool["id"]) or ["0" * 16]
        how = data.draw(st.sampled_from(["known", "known", "upper", "spaced", "hex", "text", "bytes", "dots",
                                         "long"]), label="id_how")
        rid = data.draw(st.sampled_from(ids), label="id")
        if how == "known":
            return rid
        if how == "upper":
            return rid.upper()
        if how == "spaced":
            return quote(f" {rid}\t", safe="")
        if how == "hex":
            return data.draw(st.text("0123456789abcdefABCDEF", min_size=1, max_size=20), label="hex")
        if how == "text":
            return quote(data.draw(st.text(min_size=1, max_size=60), label="text").encode("utf-8", "surrogatepass"),
                         safe="")
        if how == "bytes":
            return quote_from_bytes(data.draw(st.binary(min_size=1, max_size=40), label="bytes"), safe="")
        if how == "dots":
            return data.draw(st.sampled_from(["%2e%2e", "%2e", "..%2f..%2fetc%2fpasswd", "%00", "%2F", "~",
                                              "'%20OR%20'1'='1"]))
        return "f" * data.draw(st.sampled_from([15, 17, 64, 5000]), label="len")

    def get(self, url: str, method: str = "GET"):
        status, ctype, data = self.t.send(method, url)
        assert status < 500, (self.t.name, method, url[:300], status, data[:500])
        if method != "GET":
            assert status in (200, 404, 405) or 300 <= status < 400 or status == 422, (method, url[:200], status)
            return status, data
        path = url.split("?", 1)[0]
        if (path.startswith(API) or path == "/openapi.json") and not 300 <= status < 400:
            assert ctype.startswith("application/json"), (url[:200], status, ctype)
            json.loads(data)
        if ctype.startswith("text/html") and not path.startswith(("/docs", "/redoc")):
            # Uploaded host names and other text hold markup: it must come out escaped.
            assert not HTML_FORBIDDEN.search(data), (url[:200], HTML_FORBIDDEN.search(data))
        return status, data

    def query_case(self, data):
        path, names = data.draw(st.sampled_from(self.routes), label="route")
        if "{" in path:
            path = re.sub(r"\{[^}]+\}", lambda m: self.known(data, "id"), path)
        params = []
        for name in names:
            value = self.query_value(data, name)
            if value is not None:
                params.append((name, value))
        extra = data.draw(st.sampled_from(["none"] * 8 + ["repeat", "unknown"]), label="extra")
        if extra == "repeat" and names:
            again = self.query_value(data, names[0])
            params.append((names[0], "" if again is None else again))
        elif extra == "unknown":
            params.append((quote(data.draw(st.text(max_size=10), label="extra_name").encode("utf-8",
                                                                                             "surrogatepass"),
                                 safe=""), "1"))
        query = "&".join(f"{k}={v}" if v != "" or data.draw(st.booleans()) else k for k, v in params)
        query = query[:MAX_URL]      # proxies and uvicorn refuse longer request lines anyway
        method = data.draw(st.sampled_from(["GET"] * 15 + ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]),
                           label="method")
        status, body = self.get(path + ("?" + query if query else ""), method)
        if method != "GET":
            return
        if path == f"{API}/leaderboard" and status == 200:
            board = json.loads(body)
            for it in board["items"]:
                assert it["best_run_id"] in self.accepted and it["uploads"] >= 1
                assert it["min"] <= it["median"] <= it["max"] and it["best"] in (it["min"], it["max"])

    def path_case(self, data):
        templates = sorted({p for p, _ in self.routes if "{" in p})
        template = data.draw(st.sampled_from(templates), label="template")
        rid_text = self.path_id(data)
        status, body = self.get(re.sub(r"\{[^}]+\}", lambda m: rid_text, template))
        rid = rid_text.lower()
        if rid in self.accepted:
            assert status == 200, (template, rid_text, status)
            if template.startswith(API):
                got = json.loads(body)
                assert got["id"] == rid and got["document"] == self.accepted[rid]
        elif store.ID_PATTERN.match(rid):
            assert status == 404, (template, rid_text, status)

    # -- the runs

    def run(self, counts: dict):
        # (One hypothesis example = one request; the functions are built here so each
        # target gets its own example counts.)
        @settings(max_examples=counts["upload"], **SETTINGS)
        @given(st.data())
        def uploads(data):
            self.upload_case(data)

        @settings(max_examples=counts["query"], **SETTINGS)
        @given(st.data())
        def queries(data):
            self.query_case(data)

        @settings(max_examples=counts["path"], **SETTINGS)
        @given(st.data())
        def path_ids(data):
            self.path_case(data)

        for part in (uploads, queries, path_ids):
            started, before = time.perf_counter(), self.t.requests
            part()
            print(f"{self.t.name} {part.__name__}: {self.t.requests - before} requests in "
                  f"{time.perf_counter() - started:.1f} s")

    def check_database(self):
        """At the end: exactly the accepted runs, each complete and as uploaded."""
        engine = self.t.engine
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT id, n_records, document FROM runs")).all()
            per_run = dict(c.execute(sa.text("SELECT run_id, COUNT(*) FROM records GROUP BY run_id")).all())
        assert {r.id for r in rows} == set(self.accepted)
        for r in rows:
            assert per_run.get(r.id, 0) == r.n_records == len(self.accepted[r.id]["records"]), r.id
            assert json.loads(r.document) == self.accepted[r.id]
        assert sum(per_run.values()) == self.n_records


# ---------------------------------------------------------------- the test

@pytest.fixture
def db_dir(tmp_path):
    """Where the fuzzed databases live: a RAM disk when there is room on one. The hub
    commits with synchronous=FULL, and an fsync per stored run on the CI disk would
    take most of the time budget; durability is not what this test is about."""
    shm = Path("/dev/shm")
    try:
        roomy = shm.is_dir() and shutil.disk_usage(shm).free > 1 << 30
    except OSError:
        roomy = False
    if not roomy:
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="gpubench-hub-fuzz-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def bases():
    """Valid documents to mutate: several GPUs, hosts and record counts. Their timing
    samples are cut to 16 (a real file has up to 200), which keeps each request cheap
    and leaves every field in place."""
    docs = [make_result_doc(i, gpu=GPUS[i % len(GPUS)]) for i in range(12)]
    for doc in docs:
        for rec in doc["records"]:
            if isinstance(rec.get("timing", {}).get("samples_s"), list):
                rec["timing"]["samples_s"] = rec["timing"]["samples_s"][:16]
    return docs


def _live_specials(target: Live, fuzzer: Fuzzer, base: dict):
    """Requests TestClient cannot make: framing that lies, and bodies of the real 10 MiB limit."""
    limit = target.limit
    auth = f"Authorization: Bearer {target.token}\r\n".encode()
    raw = json.dumps(dict(base, run_id="near-limit")).encode()

    def head(extra: bytes) -> bytes:
        return b"POST " + API.encode() + b"/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + extra + b"\r\n"

    def check_nothing_stored():
        assert target.counts() == (len(fuzzer.accepted), fuzzer.n_records)

    # A declared length above the limit: refused before the body is read.
    assert target.raw(head(f"Content-Length: {limit + 1}\r\n".encode()), [b"{"]) == 413
    check_nothing_stored()
    # Chunked (no length) and over the limit: refused while counting.
    chunk = b" " * (1 << 20)
    parts = [raw[:100]] + [chunk] * (limit // len(chunk) + 1)
    chunked = [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]
    assert target.raw(head(b"Transfer-Encoding: chunked\r\n"), chunked) in (413, None)
    check_nothing_stored()
    # A length that promises more than is sent, then the client hangs up.
    assert target.raw(head(f"Content-Length: {len(raw) + 50}\r\n".encode()), [raw], hang_up=True) in (400, None)
    check_nothing_stored()
    # Exactly at the limit (stored), one byte over (413), chunked at the limit (stored: same content).
    for size, expect in ((limit, {201}), (limit + 1, {413}), (limit - 1, {200})):
        fuzzer.post(raw + b" " * (size - len(raw)), fuzzer.auth(), expect=expect)
    body = raw + b" " * (limit - len(raw))
    parts = [body[j:j + (1 << 20)] for j in range(0, len(body), 1 << 20)]
    assert target.raw(head(b"Transfer-Encoding: chunked\r\n"),
                      [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]) == 200
    check_nothing_stored()
    assert target.hub.alive()


def test_fuzz_no_5xx_and_nothing_stored_from_a_rejected_request(tmp_path, db_dir, bases):
    started = time.perf_counter()
    targets = []
    try:
        inproc = InProcess(f"sqlite:///{db_dir / 'fuzz.db'}")
        targets.append(inproc)
        routes = get_routes(inproc.app)
        assert {f"{API}/runs", f"{API}/runs/{{run_id}}", f"{API}/compare", f"{API}/leaderboard", "/",
                "/leaderboard", "/compare", "/runs", "/runs/{run_id}"} <= {p for p, _ in routes}
        fz = Fuzzer(inproc, routes, bases)
        fz.seed(24)
        for url in REGRESSIONS:
            assert fz.get(url)[0] in (200, 422), url
        fz.run(IN_PROCESS)
        fz.check_database()
        fuzzers = [fz]

        with LiveHub(f"sqlite:///{db_dir / 'live.db'}", log_dir=tmp_path) as hub:
            live = Live(hub)
            targets.append(live)
            lf = Fuzzer(live, routes, bases)
            lf.seed(12)
            lf.run(LIVE)
            _live_specials(live, lf, bases[0])
            lf.check_database()
            fuzzers.append(lf)
            assert hub.alive()
        log = hub.log_tail(200_000)
        assert "Traceback" not in log, log[-4000:]
    finally:
        for t in targets:
            t.close()

    total = sum(t.requests for t in targets)
    elapsed = time.perf_counter() - started
    for t, f in zip(targets, fuzzers):
        print(f"{t.name}: {t.requests} requests, {len(f.accepted)} runs stored, {f.rejected} uploads refused, "
              f"statuses {dict(sorted(t.statuses.items(), key=str))}")
    print(f"hub fuzz: {total} requests in {elapsed:.1f} s")
    assert total >= MIN_REQUESTS
    # Both outcomes were exercised, so the invariants were not checked on one kind only.
    for t, f in zip(targets, fuzzers):
        assert len(f.accepted) > 20 and f.rejected > 100, (t.name, len(f.accepted), f.rejected)
        assert {200, 201, 400, 401, 404, 413, 422} <= set(t.statuses), (t.name, t.statuses)
