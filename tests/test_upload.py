"""gpubench upload against a scripted stub hub: answers, retries, rejections, tokens."""

import json
import shutil
from pathlib import Path

import pytest

from gpubench.hub_client import backoff_delays, upload_file
from gpubench.results import ResultWriter, load_run

from cli_helpers import invoke, one_line_error
from hub_stub import StubHub, closed_port_url

REAL = Path(__file__).resolve().parents[1] / "results" / "cpu-vm-20261123T035329Z.json"   # a real `make run`


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No hub, token or config file from the machine running the tests."""
    for var in ("GPUBENCH_HUB", "GPUBENCH_TOKEN", "GPUBENCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def files(tmp_path):
    """Two result files: the committed real run, and the same run written again under a
    new run_id by gpubench's own writer."""
    a = tmp_path / "a.json"
    shutil.copyfile(REAL, a)
    run = load_run(REAL)
    run.run_id = "another-run"
    b = tmp_path / "b.json"
    ResultWriter(b, run)
    return a, b


@pytest.fixture
def hub():
    with StubHub() as h:
        yield h




def created(run_id, new=True):
    return {"id": run_id, "url": f"http://hub.example/runs/{run_id}", "created": new}


def test_created_sends_the_exact_bytes_and_token(hub, files, capsys):
    a, _ = files
    hub.answers = [(201, created("r-abc"))]
    code, out, err = invoke(capsys, "upload", a, "--hub", hub.url, "--token", "s3cret")
    assert code == 0, err
    assert out.strip() == f"{a} → r-abc http://hub.example/runs/r-abc"
    (req,) = hub.requests
    assert req["method"] == "POST" and req["path"] == "/api/v1/runs"
    assert req["headers"]["Authorization"] == "Bearer s3cret"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == REAL.read_bytes()          # the file's own bytes, not a re-serialisation


def test_already_uploaded(hub, files, capsys):
    a, b = files
    hub.answers = [(200, created("r-old", new=False)), (201, created("r-new"))]
    code, out, _ = invoke(capsys, "upload", a, b, "--hub", hub.url, "--token", "t")
    assert code == 0
    assert out.splitlines() == [f"{a} → r-old http://hub.example/runs/r-old (already uploaded)",
                                f"{b} → r-new http://hub.example/runs/r-new"]
    assert hub.posts[1]["body"] == b.read_bytes()


def test_503_twice_then_created(hub, files, capsys):
    a, _ = files
    hub.answers = [(503, {"detail": "busy"}), (503, {"detail": "busy"}), (201, created("r1"))]
    code, out, err = invoke(capsys, "upload", a, "--hub", hub.url, "--token", "t", "--backoff", "0")
    assert code == 0, err
    assert len(hub.posts) == 3 and all(p["body"] == REAL.read_bytes() for p in hub.posts)
    assert err.count("503 Service Unavailable") == 2 and "(3/5)" in err
    assert out.strip().endswith("r1 http://hub.example/runs/r1")


def test_backoff_is_exponential_with_jitter(hub, files):
    a, _ = files
    assert backoff_delays(5, 0.5, rng=lambda: 0.5) == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delays(3, 1.0, rng=lambda: 0.0) == [0.5, 1.0]
    hub.answers = [(502, b"bad gateway")]
    waits = []
    res = upload_file(a, hub.url, "t", attempts=5, backoff=0.5, sleep=waits.append)
    assert res.outcome == "failed" and res.attempts == 5 and len(hub.posts) == 5
    assert "502 Bad Gateway" in res.message and "5 attempt" in res.message
    assert len(waits) == 4
    for i, w in enumerate(waits):          # 0.5·2^i, jittered by ±50%
        assert 0.25 * 2 ** i <= w < 0.75 * 2 ** i


def test_rejected_file_does_not_stop_the_others(hub, files, capsys):
    a, b = files
    hub.answers = [(422, {"detail": {"field": "env.device", "message": "no device block"}}),
                   (201, created("r2"))]
    code, out, _ = invoke(capsys, "upload", a, b, "--hub", hub.url, "--token", "t", "--backoff", "0")
    assert code == 1
    assert out.splitlines() == [f"{a}: rejected: env.device: no device block",
                                f"{b} → r2 http://hub.example/runs/r2"]
    assert len(hub.posts) == 2          # a rejection is final: not retried


def test_413_and_fastapi_validation_detail(hub, files):
    a, _ = files
    hub.answers = [(413, {"detail": {"field": "body", "message": "larger than 32 MiB"}})]
    assert upload_file(a, hub.url, "t").line() == f"{a}: rejected: body: larger than 32 MiB"
    hub.answers = [(422, {"detail": [{"loc": ["body", "records", 0], "msg": "field required"}]})]
    assert upload_file(a, hub.url, "t").message == "records.0: field required"


def test_401_stops_with_a_clear_line(hub, files, capsys):
    a, b = files
    hub.answers = [(401, {"detail": "invalid token"})]
    code, out, err = invoke(capsys, "upload", a, b, "--hub", hub.url, "--token", "wrong")
    assert code == 1
    assert out.strip().startswith(f"{a}: unauthorized: hub answered 401 Unauthorized: the token was refused")
    assert "--token" in out and "GPUBENCH_TOKEN" in out
    assert "not sent" in err and str(b) in err
    assert len(hub.posts) == 1          # the same token would fail for b: not sent


def test_connection_refused_retries_then_fails(files, capsys):
    a, b = files
    url = closed_port_url()
    code, out, err = invoke(capsys, "upload", a, b, "--hub", url, "--token", "t",
                            "--attempts", "3", "--backoff", "0")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2 and all("failed: gave up after 3 attempt(s): cannot reach hub" in l for l in lines)
    assert err.count("trying again") == 4          # 2 retries per file, and both files tried
    assert "0 of 2 file(s) uploaded" in err


def test_timeout_is_retried(hub, files):
    a, _ = files
    hub.delay_s = 1.0
    res = upload_file(a, hub.url, "t", attempts=2, backoff=0, timeout=0.2)
    assert res.outcome == "failed" and "timed out" in res.message and len(hub.posts) == 2


def test_redirect_is_not_followed(hub, files):
    a, _ = files
    hub.answers = [(307, b"", {"Location": "http://elsewhere.example/api/v1/runs"})]
    res = upload_file(a, hub.url, "t")
    assert res.outcome == "failed" and "elsewhere.example" in res.message and len(hub.requests) == 1


def test_token_precedence_flag_env_config(hub, files, capsys, monkeypatch, tmp_path):
    a, _ = files
    config = tmp_path / "config.toml"
    config.write_text(f'[hub]\nurl = "{hub.url}"\ntoken = "from-config"\n')
    monkeypatch.setenv("GPUBENCH_CONFIG", str(config))
    assert invoke(capsys, "upload", a)[0] == 0                       # hub and token from the file
    monkeypatch.setenv("GPUBENCH_TOKEN", "from-env")
    assert invoke(capsys, "upload", a)[0] == 0
    assert invoke(capsys, "upload", a, "--token", "from-flag")[0] == 0
    assert [p["headers"]["Authorization"] for p in hub.posts] == [
        "Bearer from-config", "Bearer from-env", "Bearer from-flag"]


def test_default_config_location(hub, files, capsys, tmp_path):
    a, _ = files
    cfg = tmp_path / "xdg" / "gpubench" / "config.toml"         # XDG_CONFIG_HOME from the fixture
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[hub]\ntoken = "xdg-token"\n')
    assert invoke(capsys, "upload", a, "--hub", hub.url)[0] == 0
    assert hub.posts[0]["headers"]["Authorization"] == "Bearer xdg-token"


def test_no_token_is_an_error_before_any_network(hub, files, capsys):
    a, _ = files
    one_line_error(*invoke(capsys, "upload", a, "--hub", hub.url)[::2], "no upload token", "--token",
                   "GPUBENCH_TOKEN")
    assert hub.requests == []


@pytest.mark.parametrize("setup, needles", [
    ("no-hub", ["no hub", "--hub"]),
    ("bad-url", ["not http(s)"]),
    ("bad-toml", ["not valid TOML"]),
    ("missing-config", ["GPUBENCH_CONFIG", "no such file"]),
])
def test_settings_errors(files, capsys, monkeypatch, tmp_path, setup, needles):
    a, _ = files
    args = ["upload", a, "--token", "t"]
    if setup == "bad-url":
        args += ["--hub", "ftp://x"]
    if setup == "bad-toml":
        (tmp_path / "c.toml").write_text("[hub\nurl=")
        monkeypatch.setenv("GPUBENCH_CONFIG", str(tmp_path / "c.toml"))
    if setup == "missing-config":
        monkeypatch.setenv("GPUBENCH_CONFIG", str(tmp_path / "none.toml"))
    one_line_error(*invoke(capsys, *args)[::2], *needles)


def test_not_a_result_file_is_rejected_locally(hub, files, tmp_path, capsys):
    a, _ = files
    junk = tmp_path / "junk.json"
    junk.write_text(json.dumps({"hello": "world"}))
    hub.answers = [(201, created("r9"))]
    code, out, _ = invoke(capsys, "upload", junk, tmp_path / "absent.json", a, "--hub", hub.url, "--token", "t")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{junk}: rejected: not a gpubench result file")
    assert lines[1].startswith(f"{tmp_path / 'absent.json'}: rejected:") and "no such file" in lines[1]
    assert lines[2] == f"{a} → r9 http://hub.example/runs/r9"
    assert len(hub.posts) == 1 and hub.posts[0]["body"] == REAL.read_bytes()
