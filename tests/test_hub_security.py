"""Authentication and hostile input against a real `gpubench hub serve` (issue 7),
on SQLite and on PostgreSQL.

- Uploads without a token, with a wrong, malformed or revoked one (`gpubench hub
  token revoke`) get 401 and store nothing.
- SQL injection, path traversal and markup strings in every string field of an
  uploaded result file (one upload per field and string; a whole map or list at
  once for the homogeneous ones, `units` and `env.argv`), in parameter and
  variable NAMES too: the answer is 201 or a 4xx, never 5xx; what is stored comes
  back verbatim in the JSON API and escaped in the HTML pages.
- The same strings in every query parameter and path parameter of every route,
  raw and percent-encoded: never 5xx, never a run for a bogus id, never a file's
  contents, filters that match literally (`' OR 1=1 --` does not list every run).
- At the end the tables are all there with exactly the expected row counts, and
  the server log holds no unhandled error.
"""

from __future__ import annotations

import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote_plus

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")

import sqlalchemy as sa
from hub_live import (
    API,
    BACKENDS,
    LiveHub,
    create_token,
    database_url,
    db_counts,
    dumps,
    make_result_doc,
    revoke_token,
)
from markupsafe import escape

from gpubench.hub import store

pytestmark = pytest.mark.slow       # a live server per back end: ~15 s each on 2 cores

SQLI = ["' OR 1=1 --", '"; DROP TABLE runs; --', "%' UNION SELECT id, document, sha256 FROM runs --",
        "'); DELETE FROM records; DROP TABLE tokens; --"]
TRAVERSAL = ["../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%2f..%2f..%2fetc%2fpasswd"]
MARKUP = ["<script>alert('x')</script>", '"><img src=x onerror=alert(1)>{{7*7}}']
PAYLOADS = SQLI + TRAVERSAL + MARKUP
MARKUP_CHARS = set("<>&\"'")

# Fields the run page shows: a stored hostile value must appear there escaped.
SHOWN_ON_RUN_PAGE = {("suite",), ("env", "device", "name"), ("env", "device", "type"),
                     ("env", "host", "hostname"), ("env", "host", "os"), ("env", "host", "cpu"),
                     ("env", "software", "torch"), ("env", "software", "gpubench"),
                     ("records", 0, "benchmark"), ("records", 0, "params", "dtype"),
                     ("key", "records", 0, "params", "dtype")}
# Free text by nature: the hub must accept any of the payloads there.
MUST_ACCEPT = {("env", "device", "name"), ("env", "host", "hostname")}


def string_fields(doc) -> list[tuple]:
    """Path of every string value; a map or list of strings counts as one field."""
    out = []

    def walk(v, path):
        if isinstance(v, dict):
            if len(v) > 3 and all(isinstance(x, str) for x in v.values()):
                out.append(path + ("*",))
                return
            for k, x in v.items():
                walk(x, path + (k,))
        elif isinstance(v, list):
            if len(v) > 3 and all(isinstance(x, str) for x in v):
                out.append(path + ("*",))
                return
            for i, x in enumerate(v):
                walk(x, path + (i,))
        elif isinstance(v, str):
            out.append(path)

    walk(doc, ())
    # Names as well as values: a params key and an environment variable's name.
    out.append(("key", "records", 0, "params", "dtype"))
    out.append(("key", "env", "env_vars", "GPUBENCH_X"))
    return out


def with_payload(doc: dict, field: tuple, payload: str) -> dict:
    d = copy.deepcopy(doc)
    if field[0] == "key":
        *parent, name = field[1:]
        holder = d
        for p in parent:
            holder = holder[p]
        holder[payload] = holder.pop(name, "1")
        return d
    *parent, last = field
    holder = d
    for p in parent:
        holder = holder[p]
    if last == "*":
        for k in (holder if isinstance(holder, dict) else range(len(holder))):
            holder[k] = payload
    else:
        holder[last] = payload
    return d


def base_doc() -> dict:
    doc = make_result_doc(3000, gpu="Security Test GPU", host="sec-host")     # 3000 % 3 == 0: one record
    doc["env"]["env_vars"] = {"GPUBENCH_X": "1"}
    return doc


# ---------------------------------------------------------------- fixtures

class Ledger:
    """What the tests stored: {id: document}, and the token names created."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stored: dict[str, dict] = {}
        self.tokens = 1                       # the hub's own

    def add(self, rid, doc):
        with self.lock:
            assert self.stored.setdefault(rid, doc) == doc


@pytest.fixture(scope="module", params=BACKENDS)
def live(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"security-{request.param}")
    url = database_url(request.param, tmp)
    hub = LiveHub(url, log_dir=tmp).start()
    hub.ledger = Ledger()
    yield hub
    hub.stop()


_local = threading.local()


def client_for(hub):
    c = getattr(_local, "client", None)
    if c is None or c.port != hub.port:
        c = _local.client = hub.client()
    return c


def run_count(hub) -> int:
    return hub.client().get_json(f"{API}/runs?limit=1")["total"]


@pytest.fixture(scope="module")
def hostile_uploads(live):
    """Upload base_doc with each payload in each field (4 threads); [(field, payload, doc, status, id)]."""
    base = base_doc()
    jobs = [(f, p, with_payload(base, f, p)) for f in string_fields(base) for p in PAYLOADS]

    def send(job):
        field, payload, doc = job
        status, parsed, data = client_for(live).upload(dumps(doc))
        assert status < 500, (field, payload, status, data[:300])
        rid = parsed.get("id") if status in (200, 201) else None
        if rid:
            live.ledger.add(rid, doc)
        return field, payload, doc, status, rid

    with ThreadPoolExecutor(4) as ex:
        return list(ex.map(send, jobs))


# ---------------------------------------------------------------- authentication

def test_upload_needs_a_valid_active_token(live):
    c = live.client(token=None)
    before = run_count(live)
    doc = make_result_doc(3100, host="auth-host")
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Bearer {live.token}x"},
                    {"Authorization": f"Basic {live.token}"}, {"Authorization": "Bearer"},
                    {"Authorization": live.token}, {"Authorization": "Bearer ' OR 1=1 --"},
                    {"Authorization": "Bearer " + "A" * 5000}):
        status, h, data = c.request("POST", f"{API}/runs", dumps(doc), token=None, headers=headers)
        assert status == 401, (headers.get("Authorization", "")[:40], status, data[:200])
        assert h.get("www-authenticate", "").lower().startswith("bearer")
        assert live.token not in data.decode()

    # Revoked: works before `gpubench hub token revoke`, 401 right after (no restart).
    name = "revoked-soon"
    token = create_token(live.database_url, name)
    live.ledger.tokens += 1
    status, parsed, _ = live.client(token=token).upload(dumps(doc))
    assert status == 201
    live.ledger.add(parsed["id"], doc)
    revoke_token(live.database_url, name)
    doc2 = make_result_doc(3101, host="auth-host")
    status, _, data = live.client(token=token).upload(dumps(doc2))
    assert status == 401, data[:200]
    assert run_count(live) == before + 1
    # The tokens table keeps hashes, not tokens.
    engine = store.create_engine(live.database_url)
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.text("SELECT token_sha256 FROM tokens"))]
    engine.dispose()
    assert token not in stored and live.token not in stored


# ---------------------------------------------------------------- hostile documents

def test_hostile_strings_in_every_field_are_stored_verbatim(live, hostile_uploads):
    statuses = {}
    for field, payload, doc, status, rid in hostile_uploads:
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (200, 201, 400, 413, 422), (field, payload, status)
        if field in MUST_ACCEPT:
            assert status == 201, (field, payload, status)
    accepted = [u for u in hostile_uploads if u[4]]
    assert len(accepted) >= len(hostile_uploads) // 2, statuses

    c = client_for(live)
    for field, payload, doc, status, rid in accepted:
        body = c.get_json(f"{API}/runs/{rid}")
        assert body["document"] == doc, (field, payload)
        summary = {("env", "host", "hostname"): "host", ("env", "device", "name"): "gpu_name",
                   ("suite",): "suite"}.get(field)
        if summary:
            assert body[summary] == payload
    # Listing filters match literally: each hostile GPU name finds exactly its own run.
    for payload in PAYLOADS:
        page = c.get_json(f"{API}/runs?gpu={quote(payload, safe='')}&limit=200")
        mine = {rid for f, p, _, _, rid in accepted if f == ("env", "device", "name") and p == payload}
        expected = {rid for rid, d in live.ledger.stored.items()
                    if payload.lower() in (d["env"]["device"].get("name") or "").lower()}
        assert mine <= expected and {it["id"] for it in page["items"]} == expected, payload


def test_hostile_strings_are_escaped_in_pages(live, hostile_uploads):
    c = client_for(live)
    accepted = [u for u in hostile_uploads if u[4]]
    for field, payload, doc, status, rid in accepted:
        s, h, data = c.request("GET", f"/runs/{rid}", headers={"Accept": "text/html"})
        assert s == 200 and h["content-type"].startswith("text/html"), (field, payload, s)
        html = data.decode()
        if MARKUP_CHARS & set(payload):
            assert payload not in html, f"{field}: {payload!r} is in the page unescaped"
        if field in SHOWN_ON_RUN_PAGE:
            assert str(escape(payload)) in html, f"{field}: {payload!r} not shown (escaped) on the run page"
    # The pages that list or chart runs, with all of them stored.
    hostile_benchmarks = {p for f, p, _, _, rid in accepted if f == ("records", 0, "benchmark")}
    pages = ["/", "/runs?limit=200", "/leaderboard"]
    pages += [f"/leaderboard?benchmark={quote(b, safe='')}" for b in hostile_benchmarks]
    ids = [rid for f, p, _, _, rid in accepted if f in SHOWN_ON_RUN_PAGE][:4]
    pages.append("/compare?ids=" + ",".join(ids))
    markup = [p for p in PAYLOADS if MARKUP_CHARS & set(p)]
    for path in pages:
        s, _, data = c.request("GET", path, headers={"Accept": "text/html"})
        assert s == 200, (path, s, data[:300])
        html = data.decode()
        for p in markup:
            assert p not in html, f"{path}: {p!r} unescaped"
    assert "<script>alert" not in "".join(pages)     # sanity: the paths themselves were encoded


# ---------------------------------------------------------------- hostile URLs

QUERY_ROUTES = {
    f"{API}/runs": ["gpu", "suite", "since", "until", "limit", "offset"],
    f"{API}/compare": ["ids"],
    f"{API}/leaderboard": ["benchmark", "suite", "metric", "case_id"],
    f"{API}/health": ["x"],
    "/": ["x"],
    "/runs": ["gpu", "suite", "since", "until", "limit", "offset"],
    "/leaderboard": ["benchmark", "suite", "metric", "case_id"],
    "/compare": ["ids"],
}
PASSWD = "root:x:0:0"


def raw_form(payload: str) -> str:
    """As a careless client would put it in a URL: only what HTTP cannot carry is encoded."""
    return payload.replace(" ", "%20").replace("\"", "%22").replace("<", "%3C").replace(">", "%3E") \
        .replace("{", "%7B").replace("}", "%7D").replace("#", "%23")


def test_hostile_query_parameters(live, hostile_uploads):
    before = db_counts(live.database_url)
    c = client_for(live)
    checked = 0
    for route, params in QUERY_ROUTES.items():
        for name in params:
            for payload in PAYLOADS:
                for value in (quote(payload, safe=""), raw_form(payload)):
                    path = f"{route}?{name}={value}"
                    if route.endswith("/leaderboard") and name != "benchmark":
                        path += "&benchmark=matmul"
                    s, h, data = c.request("GET", path)
                    checked += 1
                    assert s < 500, (path, s, data[:300])
                    assert PASSWD not in data.decode(errors="replace")
                    if s == 200 and route == f"{API}/runs" and name == "suite":
                        sent = unquote_plus(value)        # what the server was given
                        assert json.loads(data)["total"] == sum(
                            1 for d in live.ledger.stored.values() if d["suite"] == sent), path
                    if s == 200 and route == f"{API}/compare":
                        raise AssertionError(f"{path}: compared runs for a bogus id list")
                    if h.get("content-type", "").startswith("text/html"):
                        for p in PAYLOADS:
                            if MARKUP_CHARS & set(p):
                                assert p not in data.decode(), (path, p)
    after = db_counts(live.database_url)
    assert (after["runs"], after["records"], after["tokens"]) == (before["runs"], before["records"], before["tokens"])
    assert checked == 2 * len(PAYLOADS) * sum(len(v) for v in QUERY_ROUTES.values())


def test_hostile_path_parameters(live, hostile_uploads):
    before = db_counts(live.database_url)
    c = client_for(live)
    some_id = next(iter(live.ledger.stored))
    suffixes = PAYLOADS + [some_id + "' OR 1=1 --", some_id + "/../../etc/passwd", "%00", "..", "%2e%2e",
                           "..%2f..%2fetc%2fpasswd", "....//....//etc/passwd", "%c0%ae%c0%ae/",
                           "%ff%fe", "%0d%0aSet-Cookie:%20hacked=1/", "/evil.example/"]
    for prefix in (f"{API}/runs/", "/runs/", "/", f"{API}/", "/static/", "/leaderboard/", "/compare/"):
        for payload in suffixes:
            for value in (quote(payload, safe=""), raw_form(payload)):
                s, h, data = c.request("GET", prefix + value)
                text = data.decode(errors="replace")
                assert s < 500, (prefix + value, s, text[:300])
                assert PASSWD not in text
                assert not any(k == "set-cookie" or k == "hacked" for k in h), (prefix + value, h)
                if s in (301, 302, 303, 307, 308):       # redirect_slashes: same origin only
                    assert h["location"].startswith(live.url + "/"), (prefix + value, h["location"])
                elif prefix in (f"{API}/runs/", "/runs/"):
                    # Never a run for something that is not exactly an id.
                    assert s in (400, 404, 422), (prefix + value, s)
                if h.get("content-type", "").startswith("text/html"):
                    for p in PAYLOADS:
                        if MARKUP_CHARS & set(p):
                            assert p not in text, (prefix + value, p)
    # Writes the API does not offer, even with a token, change nothing.
    for method in ("DELETE", "PUT", "PATCH"):
        s, _, _ = c.request(method, f"{API}/runs/{some_id}", b"{}")
        assert s in (404, 405), (method, s)
    after = db_counts(live.database_url)
    assert (after["runs"], after["records"], after["tokens"]) == (before["runs"], before["records"], before["tokens"])


# ---------------------------------------------------------------- afterwards

def test_tables_intact_and_counts_exact(live, hostile_uploads):
    engine = store.create_engine(live.database_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"runs", "records", "tokens", "alembic_version"} <= tables
    db = db_counts(live.database_url)
    ledger = live.ledger.stored
    assert db["runs"] == len(ledger)
    assert set(db["documents"]) == set(ledger)
    assert db["records"] == sum(len(d["records"]) for d in ledger.values())
    assert db["orphan_records"] == 0 and not db["incomplete_runs"]
    assert db["tokens"] == live.ledger.tokens
    for rid, text in db["documents"].items():
        assert json.loads(text) == ledger[rid]
    # Every request above was answered on purpose: no unhandled exception in the log.
    log = live.log_tail(10**7)
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
    assert live.alive()
