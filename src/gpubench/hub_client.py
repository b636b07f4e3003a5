"""``gpubench compare`` and ``gpubench upload``: the client side of the results hub.

The hub's API (the server is gpubench.hub):

- ``POST {hub}/api/v1/runs`` with a result file's bytes, ``Content-Type:
  application/json``, ``Authorization: Bearer TOKEN``. 201 ``{"id", "url",
  "created": true}``; 200 the same with ``"created": false`` (the file was already
  there); 400/413/422 ``{"detail": {"field", "message"}}`` (rejected); 401 (token).
- ``GET {hub}/api/v1/runs/{id}``: JSON whose ``document`` is the whole result file.

Only the standard library talks to the hub (urllib), so the client needs nothing
more than gpubench itself. Where the hub and the token come from, first found wins:

- hub: ``--hub``, ``$GPUBENCH_HUB``, the config file's ``[hub] url``;
- token: ``--token``, ``$GPUBENCH_TOKEN``, the config file's ``[hub] token``;
- config file: ``$GPUBENCH_CONFIG``, else ``$XDG_CONFIG_HOME/gpubench/config.toml``
  (``~/.config/gpubench/config.toml``)::

      [hub]
      url = "https://hub.example.org"
      token = "…"

An upload that meets a 5xx answer, a 429, a refused connection or a timeout is
tried again after 0.5 s, 1 s, 2 s, 4 s (each ±50% jitter; ``--attempts``,
``--backoff``); a 4xx answer is final.
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable

import click

from gpubench.errors import GpubenchError, ResultFileError

API = "/api/v1/runs"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))
REJECT_STATUSES = frozenset({400, 413, 422})
AUTH_STATUSES = frozenset({401, 403})
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF_S = 0.5
DEFAULT_TIMEOUT_S = 30.0


# ---- configuration ----

def config_path() -> Path:
    explicit = os.environ.get("GPUBENCH_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "gpubench" / "config.toml"


def read_config() -> dict:
    """The config file's ``[hub]`` table; {} when there is no file (unless
    $GPUBENCH_CONFIG names one: then it must exist)."""
    path = config_path()
    if not path.exists():
        if os.environ.get("GPUBENCH_CONFIG"):
            raise GpubenchError(f"GPUBENCH_CONFIG={path}: no such file")
        return {}
    try:
        import tomllib
    except ImportError:     # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise GpubenchError(f"reading {path} needs Python ≥ 3.11 or `pip install tomli`") from None
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise GpubenchError(f"config {path}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise GpubenchError(f"config {path} is not valid TOML ({e})") from None
    hub = doc.get("hub", {})
    if not isinstance(hub, dict):
        raise GpubenchError(f"config {path}: [hub] is not a table")
    for key in ("url", "token"):
        if key in hub and not isinstance(hub[key], str):
            raise GpubenchError(f"config {path}: [hub] {key} is not a string")
    return hub


def resolve_hub(flag: str | None, required: bool = True) -> str | None:
    """The hub's base URL (no trailing slash): --hub, $GPUBENCH_HUB, config [hub] url."""
    url = flag or os.environ.get("GPUBENCH_HUB") or read_config().get("url")
    if not url:
        if required:
            raise GpubenchError("no hub: pass --hub URL, set GPUBENCH_HUB, or put [hub] url in "
                                f"{config_path()}")
        return None
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GpubenchError(f"hub URL {url!r} is not http(s)://HOST[:PORT][/PATH]")
    return url.strip().rstrip("/")


def resolve_token(flag: str | None) -> str:
    """--token, $GPUBENCH_TOKEN, config [hub] token; an error if none."""
    token = flag or os.environ.get("GPUBENCH_TOKEN") or read_config().get("token")
    if not token or not token.strip():
        raise GpubenchError("no upload token: pass --token TOKEN, set GPUBENCH_TOKEN, or put "
                            f"[hub] token in {config_path()}")
    token = token.strip()
    if any(c in token for c in "\r\n"):
        raise GpubenchError("the upload token has a line break in it")
    return token


# ---- HTTP ----

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the token (and, for a POST,
    lose the body) to an address nobody chose."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None


def _request(method: str, url: str, body: bytes | None, headers: dict, timeout: float) -> Response:
    """One HTTP exchange; an HTTP error status is a Response, a network failure raises
    OSError (URLError, a timeout, a reset) or HTTPException."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return Response(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as e:
        try:
            data = e.read()
        except (OSError, HTTPException):
            data = b""
        return Response(e.code, data, dict(e.headers or {}))


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return "timed out"
        return str(getattr(reason, "strerror", None) or reason)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def _detail(resp: Response) -> str:
    """The server's reason, as "field: message" where it says which field."""
    doc = resp.json()
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(detail, dict):
        field, message = detail.get("field"), detail.get("message") or detail.get("msg")
        if field and message:
            return f"{field}: {message}"
        return str(message or field or detail)
    if isinstance(detail, list) and detail:          # FastAPI's own validation errors
        parts = []
        for d in detail:
            if isinstance(d, dict):
                loc = ".".join(str(x) for x in d.get("loc", []) if x != "body")
                parts.append(f"{loc}: {d.get('msg')}" if loc else str(d.get("msg")))
            else:
                parts.append(str(d))
        return "; ".join(parts)
    if isinstance(detail, str):
        return detail
    text = resp.body.decode("utf-8", "replace").strip().splitlines()
    return text[0][:200] if text else "(no details)"


def _status_text(code: int) -> str:
    from http import HTTPStatus

    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


# ---- fetching a run ----

def fetch_document(hub: str, run_id: str, timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """The result file stored on the hub under ``run_id`` (one attempt)."""
    url = f"{hub}{API}/{urllib.parse.quote(run_id, safe='')}"
    try:
        resp = _request("GET", url, None, {"Accept": "application/json"}, timeout)
    except (OSError, HTTPException) as e:
        raise GpubenchError(f"cannot reach hub {hub} to fetch run {run_id!r} ({_why(e)})") from None
    if resp.status == 404:
        raise GpubenchError(f"run {run_id!r} not found on hub {hub}")
    if resp.status != 200:
        raise GpubenchError(f"hub {hub} answered {_status_text(resp.status)} for run {run_id!r}: "
                            f"{_detail(resp)}")
    doc = resp.json()
    document = doc.get("document") if isinstance(doc, dict) else None
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            document = None
    if not isinstance(document, dict):
        raise GpubenchError(f"hub {hub}: the answer for run {run_id!r} has no result document "
                            f"(is {hub} a gpubench hub?)")
    return document


def load_run_or_id(arg: str, hub: str | None):
    """A result file if ``arg`` is an existing file, else a run ID fetched from the hub."""
    from gpubench.results import Run, load_run

    path = Path(arg)
    if path.exists():
        return load_run(path)
    looks_like_file = arg.endswith(".json") or "/" in arg or os.sep in arg
    if looks_like_file or hub is None:
        raise GpubenchError(f"{arg}: no such file" + ("" if looks_like_file else
                            " (and no hub to fetch it from as a run ID: pass --hub URL or set GPUBENCH_HUB)"))
    return Run.from_dict(fetch_document(hub, arg), source=f"run {arg} from {hub}")


# ---- uploading ----

@dataclass
class UploadResult:
    file: str
    outcome: str                # "created", "exists", "rejected", "unauthorized", "failed"
    id: str | None = None
    url: str | None = None
    message: str = ""
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in ("created", "exists")

    def line(self) -> str:
        if self.outcome == "created":
            return f"{self.file} → {self.id} {self.url}"
        if self.outcome == "exists":
            return f"{self.file} → {self.id} {self.url} (already uploaded)"
        return f"{self.file}: {self.outcome}: {self.message}"


def backoff_delays(attempts: int, base: float, rng: Callable[[], float] = random.random) -> list[float]:
    """The waits between ``attempts`` tries: base·2^i, each scaled by a jitter in [0.5, 1.5)."""
    return [base * (2 ** i) * (0.5 + rng()) for i in range(max(attempts - 1, 0))]


def upload_file(path: str | os.PathLike, hub: str, token: str, *, attempts: int = DEFAULT_ATTEMPTS,
                backoff: float = DEFAULT_BACKOFF_S, timeout: float = DEFAULT_TIMEOUT_S,
                sleep: Callable[[float], None] = time.sleep,
                notify: Callable[[str], None] | None = None) -> UploadResult:
    """Validate ``path`` locally, then POST its bytes; never raises for a file's own trouble."""
    from gpubench.results import load_run

    name = str(path)
    try:
        load_run(path)          # a file that is not a result never reaches the hub
        body = Path(path).read_bytes()
    except ResultFileError as e:
        return UploadResult(name, "rejected", message=f"not a gpubench result file ({e})")
    except OSError as e:
        return UploadResult(name, "rejected", message=f"cannot read ({e.strerror or e})")
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "Authorization": f"Bearer {token}"}
    delays = backoff_delays(attempts, backoff)
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            resp = _request("POST", f"{hub}{API}", body, headers, timeout)
        except (OSError, HTTPException) as e:
            last = f"cannot reach hub {hub} ({_why(e)})"
            if isinstance(getattr(e, "reason", None), ssl.SSLCertVerificationError):
                return UploadResult(name, "failed", attempts=attempt, message=last)   # not transient
        else:
            if resp.status in (200, 201):
                doc = resp.json()
                if not isinstance(doc, dict) or not doc.get("id"):
                    return UploadResult(name, "failed", attempts=attempt,
                                        message=f"hub answered {_status_text(resp.status)} without a run id")
                created = doc.get("created", resp.status == 201)
                return UploadResult(name, "created" if created else "exists", id=str(doc["id"]),
                                    url=str(doc.get("url") or f"{hub}{API}/{doc['id']}"), attempts=attempt)
            if resp.status in REJECT_STATUSES:
                return UploadResult(name, "rejected", message=_detail(resp), attempts=attempt)
            if resp.status in AUTH_STATUSES:
                return UploadResult(name, "unauthorized", attempts=attempt,
                                    message=f"hub answered {_status_text(resp.status)}: the token was "
                                            f"refused ({_detail(resp)}); check --token, GPUBENCH_TOKEN "
                                            f"or [hub] token in {config_path()}")
            if 300 <= resp.status < 400:
                where = resp.headers.get("Location") or resp.headers.get("location") or "?"
                return UploadResult(name, "failed", attempts=attempt,
                                    message=f"hub answered {_status_text(resp.status)} to {where}: "
                                            f"pass that address as --hub")
            if resp.status not in RETRY_STATUSES:
                return UploadResult(name, "failed", attempts=attempt,
                                    message=f"hub answered {_status_text(resp.status)}: {_detail(resp)}")
            last = f"hub answered {_status_text(resp.status)}: {_detail(resp)}"
        if attempt < attempts:
            wait = delays[attempt - 1]
            if notify:
                notify(f"{name}: {last}; trying again in {wait:.2f} s ({attempt + 1}/{attempts})")
            sleep(wait)
    return UploadResult(name, "failed", attempts=attempts,
                        message=f"gave up after {attempts} attempt(s): {last}")


# ---- commands ----

@click.command()
@click.argument("items", nargs=-1, required=True, metavar="FILE_OR_ID...")
@click.option("--hub", metavar="URL", help="hub to fetch run IDs from (default $GPUBENCH_HUB, then the config file)")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="write a bar chart of the ratios to run 1 (PNG; needs matplotlib)")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="write the comparison as CSV (a row per case, columns per run)")
@click.option("--force", is_flag=True, help="overwrite an existing --csv/--plot file (never an input)")
@click.option("--json", "as_json", is_flag=True, help="print the comparison as JSON instead of the table")
@click.option("--probes", is_flag=True, help="also compare every probe a search ran (mamf shapes, fits sizes)")
def compare(items, hub, plot_path, csv_path, force, as_json, probes):
    """Compare result files (or run IDs on a hub): a row per case, a column per run,
    ratios to the first run with their 90% intervals."""
    from gpubench.compare import compare_runs, plot_format
    from gpubench.outfiles import check_output, write_atomic

    if len(items) < 2:
        raise GpubenchError(f"compare needs at least 2 runs (result files or run IDs), got {len(items)}")
    # The outputs are settled before any file is read or any run fetched: a typo such as
    # --csv a.json must cost nothing, least of all a.json.
    inputs = [Path(i) for i in items if Path(i).exists()]
    outputs = [("--csv", csv_path), ("--plot", plot_path)]
    for k, (flag, path) in enumerate(outputs):
        if path is None:
            continue
        check_output(path, flag, force=force, inputs=inputs, others=outputs[k + 1:])
        if path.parent and not path.parent.exists():
            raise GpubenchError(f"{flag} {path}: folder {path.parent} does not exist")
    if plot_path is not None:
        plot_format(plot_path)
    needs_hub = [i for i in items if not Path(i).exists()]
    hub_url = resolve_hub(hub, required=False) if needs_hub else None
    runs = [load_run_or_id(i, hub_url) for i in items]     # every run read before anything is written
    comparison = compare_runs(runs, probes=probes)
    if as_json:
        click.echo(json.dumps(comparison.to_json(), indent=1, allow_nan=False))
    else:
        click.echo(comparison.table())
    if csv_path is not None:
        frame = comparison.to_dataframe()
        try:
            write_atomic(csv_path, lambda f: frame.to_csv(f, index=False))
        except OSError as e:
            raise GpubenchError(f"--csv {csv_path}: cannot write ({e.strerror or e})") from None
        click.echo(f"wrote {csv_path}", err=True)
    if plot_path is not None:
        try:
            comparison.plot(plot_path)
        except OSError as e:
            raise GpubenchError(f"--plot {plot_path}: cannot write ({e.strerror or e})") from None
        except ValueError as e:     # matplotlib: an unknown image format
            raise GpubenchError(f"--plot {plot_path}: {e}") from None
        click.echo(f"wrote {plot_path}", err=True)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--hub", metavar="URL", help="hub URL (default $GPUBENCH_HUB, then [hub] url in the config file)")
@click.option("--token", metavar="TOKEN", help="upload token (default $GPUBENCH_TOKEN, then [hub] token in the config file)")
@click.option("--attempts", type=click.IntRange(1, 20), metavar="N", default=DEFAULT_ATTEMPTS, show_default=True,
              help="tries per file when the hub is unreachable or answers 5xx/429")
@click.option("--backoff", type=click.FloatRange(0), metavar="SECONDS", default=DEFAULT_BACKOFF_S, show_default=True,
              help="seconds before the second try; doubled each time, ±50% jitter")
@click.option("--timeout", type=click.FloatRange(0.1), metavar="SECONDS", default=DEFAULT_TIMEOUT_S, show_default=True,
              help="seconds to wait for the hub per request")
def upload(files, hub, token, attempts, backoff, timeout):
    """Upload result files to a gpubench hub: one line per file; exit 1 if any did not go up."""
    hub_url = resolve_hub(hub)
    token_ = resolve_token(token)       # both settled before any network
    host = urllib.parse.urlsplit(hub_url).hostname or ""
    if hub_url.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
        click.echo(f"gpubench: warning: {hub_url} is plain http: the token travels unencrypted", err=True)
    results = []
    for i, f in enumerate(files):
        res = upload_file(f, hub_url, token_, attempts=attempts, backoff=backoff, timeout=timeout,
                          notify=lambda msg: click.echo(msg, err=True))
        results.append(res)
        click.echo(res.line())
        if res.outcome == "unauthorized" and i + 1 < len(files):
            # The same token goes with every file: the others would be refused the same way.
            click.echo(f"stopped: the hub refused the token, so the other {len(files) - i - 1} file(s) "
                       f"were not sent: " + ", ".join(str(x) for x in files[i + 1:]), err=True)
            sys.exit(1)
    bad = [r for r in results if not r.ok]
    if bad:
        click.echo(f"{len(results) - len(bad)} of {len(results)} file(s) uploaded; "
                   f"{len(bad)} did not go up", err=True)
        sys.exit(1)
