"""A real hub server on loopback for the reliability and security tests (issue 7).

Not a test module: the tests import it (``from hub_live import ...``).

- ``make_result_doc(i, gpu=...)``: a valid result document, distinct for each ``i``
  and identical for the same arguments, built from a REAL result file that
  gpubench writes on the CPU once per test session (``real_result_bytes``).
- ``LiveHub``: ``python -m gpubench hub serve`` as a subprocess on a free loopback
  port, with a token made through the CLI; ``kill()`` (SIGKILL), ``restart()``,
  ``stop()``; its output goes to ``LiveHub.log_path``.
- ``Client``: a tiny keep-alive HTTP client (stdlib ``http.client``), one per thread.
- ``PostgresCluster`` / ``shared_postgres()``: a throwaway PostgreSQL cluster
  (initdb + pg_ctl, unix socket in its temp dir), run as the ``postgres`` user when
  we are root; ``database_url(kind, tmp_path)`` gives a fresh SQLite file or a fresh
  PostgreSQL database, or skips the test saying why PostgreSQL is not there.
"""

from __future__ import annotations

import atexit
import copy
import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

API = "/api/v1"
DEFAULT_GPU = "NVIDIA H100 80GB HBM3"

# ---------------------------------------------------------------- result documents

_RESULT_LOCK = threading.Lock()
_RESULT: dict[str, bytes] = {}
RESULT_COMMAND = ["run", "--benchmark", "matmul", "--dtype", "fp32", "--shape", "128x128x128",
                  "--device", "cpu", "--quick"]


def _subprocess_env() -> dict:
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("GPUBENCH_DATABASE_URL", None)      # every command here names its database
    env["PYTHONUNBUFFERED"] = "1"
    return env


def real_result_bytes() -> bytes:
    """The bytes of a result file written by ``gpubench run`` on the CPU (once per process)."""
    with _RESULT_LOCK:
        if "raw" not in _RESULT:
            out = Path(tempfile.mkdtemp(prefix="gpubench-live-result-"))
            atexit.register(shutil.rmtree, out, True)
            path = out / "matmul.json"
            p = subprocess.run([sys.executable, "-m", "gpubench", *RESULT_COMMAND, "--out", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_subprocess_env(),
                               timeout=300, check=False)
            if p.returncode != 0 or not path.exists():
                raise RuntimeError("gpubench run failed:\n" + p.stdout.decode(errors="replace")[-3000:])
            _RESULT["raw"] = path.read_bytes()
        return _RESULT["raw"]


def make_result_doc(i: int, gpu: str = DEFAULT_GPU, *, host: str | None = None) -> dict:
    """A valid result document, distinct for every ``i`` (and per ``gpu``/``host``), the same
    for the same arguments: the real CPU result file with its run_id, start time, device,
    host and number of records (1 to 3, each a distinct case) varied."""
    base = json.loads(real_result_bytes())
    doc = copy.deepcopy(base)
    doc["run_id"] = uuid.uuid5(uuid.NAMESPACE_URL, f"gpubench-live/{i}/{gpu}/{host}").hex
    t = 1_767_225_600 + i * 61          # 2026-01-01T00:00:00Z + i minutes and i seconds
    doc["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))
    doc["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t + 30))
    env = doc["env"]
    env["device"].update(name=gpu, type="cuda", spec_key=None, total_memory_bytes=80 * 2**30,
                         index=0, label="cuda:0")
    env["host"]["hostname"] = host if host is not None else f"live-node-{i % 7}"
    template = doc["records"][0]
    records = []
    for j in range(1 + i % 3):
        rec = copy.deepcopy(template)
        rec["params"] = dict(rec["params"], m=128 * (j + 1))
        rec["case_id"] = f"{rec['benchmark']}[" + ",".join(
            f"{k}={rec['params'][k]}" for k in sorted(rec["params"])) + "]"
        rec["device"] = "cuda:0"
        records.append(rec)
    doc["records"] = records
    return doc


def dumps(doc) -> bytes:
    return json.dumps(doc).encode("utf-8")


# ---------------------------------------------------------------- HTTP

class Client:
    """A keep-alive HTTP/1.1 connection to the hub (not thread-safe: one per thread).
    ``request`` returns (status, headers dict with lower-case names, body bytes);
    a broken connection is reopened once for idempotent methods only, and one idle
    for a while is not reused (the server may be closing it as the request goes out)."""

    IDLE_S = 2.0

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60):
        u = urlsplit(base_url)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.token = token
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, *,
                token: str | None | bool = True, headers: dict | None = None):
        h = {"Accept": "application/json"}
        tok = self.token if token is True else (token or None)
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        if self.conn is not None and time.monotonic() - self.last_used > self.IDLE_S:
            self.close()            # the server may be closing it (uvicorn's keep-alive is 5 s)
        for attempt in (0, 1):
            conn = self.conn or self._connect()
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt or method not in ("GET", "HEAD"):
                    raise
                continue
            self.last_used = time.monotonic()
            if resp.getheader("connection", "").lower() == "close":
                self.close()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")

    def get_json(self, path: str):
        status, _, data = self.request("GET", path)
        assert status == 200, (path, status, data[:500])
        return json.loads(data)

    def upload(self, body: bytes, token: str | None | bool = True):
        """(status, parsed JSON or None, raw body) of POST /api/v1/runs."""
        status, _, data = self.request("POST", f"{API}/runs", body, token=token)
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        return status, parsed, data


# ---------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m gpubench hub ARGS`` (text output, not checked)."""
    return subprocess.run([sys.executable, "-m", "gpubench", "hub", *args], capture_output=True, text=True,
                          env=_subprocess_env(), timeout=timeout, check=False)


def create_token(database_url: str, name: str) -> str:
    p = hub_cli("token", "create", name, "--database-url", database_url)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError(f"gpubench hub token create {name} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout.strip().splitlines()[0].strip()


def revoke_token(database_url: str, name: str) -> None:
    p = hub_cli("token", "revoke", name, "--database-url", database_url)
    if p.returncode != 0:
        raise RuntimeError(f"gpubench hub token revoke {name} failed ({p.returncode}):\n{p.stderr[-2000:]}")


class LiveHub:
    """``gpubench hub serve`` on 127.0.0.1 as a subprocess.

    ``with LiveHub(url, log_dir=tmp_path) as hub:`` starts it (a token named
    ``token_name`` is created first through the CLI) and waits until
    ``GET /api/v1/runs`` answers 200; ``hub.url``, ``hub.token``, ``hub.proc``,
    ``hub.log_path``; ``kill()`` SIGKILLs it, ``restart()`` starts it again on the
    same database (and the same port when it is free), ``stop()`` ends it (SIGTERM,
    then SIGKILL)."""

    def __init__(self, database_url: str, *, log_dir: str | os.PathLike | None = None,
                 token_name: str = "live-tests", extra_args: tuple[str, ...] = (),
                 startup_timeout: float = 60.0):
        self.database_url = database_url
        self.token_name = token_name
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        if log_dir is None:
            log_dir = tempfile.mkdtemp(prefix="gpubench-live-hub-")
        self.log_path = Path(log_dir) / f"hub-{uuid.uuid4().hex[:8]}.log"
        self.token: str | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None | bool = True) -> Client:
        return Client(self.url, self.token if token is True else (token or None))

    # -- life cycle

    def start(self) -> LiveHub:
        if self.token is None:
            self.token = create_token(self.database_url, self.token_name)
        last_error = None
        for attempt in range(3):
            port = self.port if (self.port and attempt == 0) else free_port()
            try:
                self._spawn(port)
                return self
            except _PortTaken as e:             # lost the race for the port: another one
                last_error = e
                self.port = None
        raise RuntimeError(f"the hub did not start: {last_error}")

    def _spawn(self, port: int) -> None:
        self.port = port
        self.starts += 1
        cmd = [sys.executable, "-m", "gpubench", "hub", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--database-url", self.database_url, *self.extra_args]
        with open(self.log_path, "ab") as log:     # the child keeps its own copy of the descriptor
            log.write(f"\n===== start {self.starts} on port {port} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=_subprocess_env())
        deadline = time.monotonic() + self.startup_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                tail = self.log_tail()
                self.proc = None
                if "address already in use" in tail.lower():
                    raise _PortTaken(f"port {port} taken")
                raise RuntimeError(f"the hub exited with {rc} while starting; log {self.log_path}:\n{tail}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the hub did not answer within {self.startup_timeout:.0f} s; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", f"{API}/runs?limit=1")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except (OSError, http.client.HTTPException):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing, in-flight requests cut off."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=30)
            self.proc = None

    def restart(self) -> LiveHub:
        """Start again on the same database (stopping it first if it runs)."""
        self.stop()
        return self.start()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _PortTaken(Exception):
    pass


# ---------------------------------------------------------------- PostgreSQL

class PostgresUnavailable(Exception):
    """Why no throwaway PostgreSQL cluster can be started here (the tests skip with it)."""


def find_postgres_bin() -> Path | None:
    """The directory of initdb, pg_ctl and createdb: initdb on PATH (symlinks resolved,
    since Debian's /usr/bin has no pg_ctl) or the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        d = Path(os.path.realpath(found)).parent
        if (d / "pg_ctl").exists():
            return d
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")])
    for c in reversed(candidates):
        if Path(c).with_name("pg_ctl").exists():
            return Path(c).parent
    return None


class PostgresCluster:
    """A PostgreSQL cluster in a temp dir, listening only on a unix socket in that dir
    (port number chosen free, so several can run). As root, the server programs run
    as the ``postgres`` user (initdb refuses root) and the dir belongs to it. Trust
    authentication: nothing else can reach the socket dir (mode 0700)."""

    def __init__(self):
        bindir = find_postgres_bin()
        if bindir is None:
            raise PostgresUnavailable("PostgreSQL is not installed (no initdb on PATH or in "
                                      "/usr/lib/postgresql/*/bin); .ci/run installs it")
        self.bindir = bindir
        self.as_user: str | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no 'postgres' user to run "
                                          "initdb as (initdb refuses root)") from None
            self.as_user = "postgres"
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
        self.dir = Path(tempfile.mkdtemp(prefix="gpubench-pg-"))
        self.data = self.dir / "data"
        self.sock = self.dir
        self.port = free_port()
        self.user = "postgres"
        self.log = self.dir / "postgres.log"
        self._counter = 0
        self._lock = threading.Lock()
        self.running = False
        if self.as_user:
            os.chown(self.dir, self._uid, self._gid)
        os.chmod(self.dir, 0o700)

    def _cmd(self, program: str, *args: str) -> list[str]:
        argv = [str(self.bindir / program), *args]
        if self.as_user is None:
            return argv
        if shutil.which("runuser"):
            return ["runuser", "-u", self.as_user, "--", *argv]
        import shlex
        return ["su", self.as_user, "-s", "/bin/sh", "-c", shlex.join(argv)]

    def _run(self, program: str, *args: str, timeout: float = 120) -> None:
        p = subprocess.run(self._cmd(program, *args), cwd=self.dir, capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"}, check=False)
        if p.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(f"{program} {' '.join(args)} failed ({p.returncode}): "
                                      f"{(p.stderr or p.stdout).strip()[-2000:]}\n{log}")

    def start(self) -> PostgresCluster:
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        # fsync off: these tests kill the hub, never PostgreSQL, so a commit is as durable
        # as they need without waiting for the disk (the 2-core CI machine is slow at it).
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses='' -c fsync=off "
                f"-c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", opts)
        self.running = True
        return self

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@/{dbname}?host={self.sock}&port={self.port}"

    def create_database(self, prefix: str = "hub") -> str:
        """A new empty database; its URL."""
        with self._lock:
            self._counter += 1
            name = f"{prefix}_{self._counter}_{uuid.uuid4().hex[:6]}"
        self._run("createdb", "-h", str(self.sock), "-p", str(self.port), "-U", self.user, name)
        return self.url(name)

    def stop(self) -> None:
        if self.running:
            try:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", timeout=60)
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_postgres() -> tuple[str, callable]:
    """A throwaway cluster with one database: (its URL, a function that stops it and
    deletes its files). Raises PostgresUnavailable saying why not."""
    cluster = PostgresCluster().start()
    try:
        url = cluster.create_database()
    except Exception:
        cluster.stop()
        raise
    return url, cluster.stop


_SHARED: dict[str, object] = {}
_SHARED_LOCK = threading.Lock()


def shared_postgres() -> PostgresCluster:
    """One cluster per test process (stopped at exit); raises PostgresUnavailable
    (remembered, so a missing PostgreSQL costs one look)."""
    with _SHARED_LOCK:
        if "error" in _SHARED:
            raise PostgresUnavailable(_SHARED["error"])
        if "cluster" not in _SHARED:
            try:
                cluster = PostgresCluster()
                atexit.register(cluster.stop)
                cluster.start()
            except PostgresUnavailable as e:
                _SHARED["error"] = str(e)
                raise
            _SHARED["cluster"] = cluster
        return _SHARED["cluster"]


BACKENDS = ("sqlite", "postgresql")


def database_url(backend: str, tmp_path) -> str:
    """A fresh, empty database for one test: a SQLite file in tmp_path or a new database
    in the shared PostgreSQL cluster (pytest.skip with the reason when there is none)."""
    if backend == "sqlite":
        return f"sqlite:///{Path(tmp_path) / 'hub.db'}"
    if backend == "postgresql":
        import pytest

        try:
            return shared_postgres().create_database()
        except PostgresUnavailable as e:
            pytest.skip(f"PostgreSQL: {e}")
    raise ValueError(backend)


# ---------------------------------------------------------------- checking a database

def db_counts(database_url: str) -> dict:
    """Direct SQLAlchemy look at the tables: row counts, runs whose records are missing or
    too many, records whose run is missing, and the stored (id, n_records, document)."""
    import sqlalchemy as sa

    from gpubench.hub import store

    engine = store.create_engine(database_url)
    try:
        with engine.connect() as c:
            runs = c.execute(sa.text("SELECT id, n_records, document FROM runs")).all()
            per_run = dict(c.execute(sa.text("SELECT run_id, COUNT(*) FROM records GROUP BY run_id")).all())
            orphans = c.execute(sa.text(
                "SELECT COUNT(*) FROM records WHERE run_id NOT IN (SELECT id FROM runs)")).scalar_one()
            n_records = c.execute(sa.text("SELECT COUNT(*) FROM records")).scalar_one()
            n_tokens = c.execute(sa.text("SELECT COUNT(*) FROM tokens")).scalar_one()
    finally:
        engine.dispose()
    incomplete = {rid: (n, per_run.get(rid, 0)) for rid, n, _ in runs if per_run.get(rid, 0) != n}
    return {"runs": len(runs), "records": n_records, "tokens": n_tokens, "orphan_records": orphans,
            "incomplete_runs": incomplete, "documents": {rid: doc for rid, _, doc in runs},
            "n_records": {rid: n for rid, n, _ in runs}}


# ---------------------------------------------------------------- uploads and their outcomes

class Outcomes:
    """What uploaders saw, thread-safe: for each upload the content key (any hashable
    naming the document's content), the HTTP status (None: no answer, e.g. the
    connection died), the id and ``created`` when acknowledged."""

    def __init__(self):
        self._lock = threading.Lock()
        self.items: list[tuple] = []        # (key, status, id, created, detail)

    def add(self, key, status, rid=None, created=None, detail=None):
        with self._lock:
            self.items.append((key, status, rid, created, detail))

    def acked(self) -> list[tuple]:
        return [it for it in self.items if it[1] in (200, 201) and it[2]]

    def by_status(self) -> dict:
        out: dict = {}
        for it in self.items:
            out[it[1]] = out.get(it[1], 0) + 1
        return out


def upload_once(client: Client, key, body: bytes, outcomes: Outcomes) -> int | None:
    """POST one document, record the outcome; returns the status (None: no answer)."""
    try:
        status, parsed, data = client.upload(body)
    except (OSError, http.client.HTTPException) as e:
        client.close()
        outcomes.add(key, None, detail=f"{type(e).__name__}: {e}")
        return None
    if status in (200, 201) and isinstance(parsed, dict):
        outcomes.add(key, status, parsed.get("id"), parsed.get("created"), detail=data[:300])
    else:
        outcomes.add(key, status, detail=data[:300])
    return status


def list_all_runs(client: Client) -> tuple[list[dict], int]:
    """Every item of GET /api/v1/runs, paging with limit=200; and the total it reports."""
    items, offset, total = [], 0, None
    while True:
        page = client.get_json(f"{API}/runs?limit=200&offset={offset}")
        total = page["total"] if total is None else total
        assert page["total"] == total, "the total changed while paging a quiet server"
        items += page["items"]
        if not page["items"] or len(items) >= total:
            return items, total
        offset += len(page["items"])


def check_hub_contents(hub: LiveHub, outcomes: Outcomes, docs: dict, *, maybe_stored: set = frozenset(),
                       workers: int = 8) -> dict:
    """Assert the hub holds exactly what was acknowledged, complete, once:

    - every content acknowledged has one id (all its acks agree) and distinct contents
      have distinct ids; exactly one of its acks says created (201, created:true), or
      none if it is in ``maybe_stored``;
    - GET /runs lists each acknowledged id once, and nothing else except contents in
      ``maybe_stored`` (uploads whose answer was lost, e.g. to a kill -9); its total
      is the number listed;
    - GET /runs/{id} returns the identical document (as JSON) with the right n_records;
    - directly in the database: as many runs, no orphan record, no run whose records
      are missing, every document text parses to its content;
    - a content that was only ever refused (4xx/5xx) is not stored.
    Returns {"acked": ..., "stored": ..., "extra": ...} counts for the report."""
    ids: dict = {}
    created: dict = {}
    for key, status, rid, was_created, detail in outcomes.acked():
        assert ids.setdefault(key, rid) == rid, f"content {key!r} acknowledged with two ids"
        assert was_created is (status == 201), f"status {status} with created={was_created}"
        created[key] = created.get(key, 0) + (1 if was_created else 0)
    assert len(set(ids.values())) == len(ids), "two different contents were given the same id"
    for key, n in created.items():
        assert n <= 1, f"content {key!r} answered created:true {n} times (stored twice?)"
        # Only an upload whose answer was lost may have created it unseen (the retry says 200).
        assert n == 1 or key in maybe_stored, f"content {key!r} stored but no upload was told created:true"
    key_of = {rid: key for key, rid in ids.items()}

    client = hub.client()
    items, total = list_all_runs(client)
    listed = [it["id"] for it in items]
    assert len(listed) == len(set(listed)) == total, "GET /runs lists a run twice or its total is wrong"
    missing = set(ids.values()) - set(listed)
    assert not missing, f"{len(missing)} acknowledged uploads are not stored, e.g. {sorted(missing)[:3]}"
    extra = set(listed) - set(ids.values())

    # Documents: the acknowledged ones by id, the others (lost answers) must be one of maybe_stored.
    def fetch(rid):
        c = fetch.clients.setdefault(threading.get_ident(), hub.client())
        status, _, data = c.request("GET", f"{API}/runs/{rid}")
        assert status == 200, (rid, status, data[:300])
        return rid, json.loads(data)
    fetch.clients = {}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as ex:
        fetched = dict(ex.map(fetch, listed))
    maybe_by_doc = {json.dumps(docs[k], sort_keys=True): k for k in maybe_stored}
    for rid, body in fetched.items():
        doc = body["document"]
        if rid in key_of:
            expected = docs[key_of[rid]]
            assert doc == expected, f"run {rid}: the stored document differs from the upload"
        else:
            k = maybe_by_doc.get(json.dumps(doc, sort_keys=True))
            assert k is not None, f"run {rid} is stored but was never acknowledged nor in flight"
            expected = docs[k]
        assert body["n_records"] == len(expected["records"]), f"run {rid}: n_records {body['n_records']}"

    # Refused-only contents are not stored.
    refused = {it[0] for it in outcomes.items if it[1] is not None and it[1] not in (200, 201)}
    refused -= set(ids)
    refused_docs = {json.dumps(docs[k], sort_keys=True) for k in refused}
    for rid, body in fetched.items():
        assert json.dumps(body["document"], sort_keys=True) not in refused_docs, \
            f"run {rid} was refused (no 200/201) yet stored"

    # The database itself.
    db = db_counts(hub.database_url)
    assert db["runs"] == total, f"{db['runs']} rows in runs, GET /runs says {total}"
    assert db["orphan_records"] == 0, f"{db['orphan_records']} records without their run"
    assert not db["incomplete_runs"], f"runs whose records are missing: {dict(list(db['incomplete_runs'].items())[:5])}"
    assert db["records"] == sum(db["n_records"].values())
    for rid, text in db["documents"].items():
        assert json.loads(text) == fetched[rid]["document"]
    return {"acked": len(ids), "stored": total, "extra": len(extra)}
