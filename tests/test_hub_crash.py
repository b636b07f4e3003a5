"""kill -9 of a real `gpubench hub serve` while uploads stream in (issue 7).

16 uploader threads each send their own distinct documents, one after another,
over keep-alive connections. Once 120 uploads are acknowledged the server is
SIGKILLed (no shutdown: requests in flight are cut off mid-transaction). Then:

1. with the server dead, the database is read directly (SQLAlchemy): every upload
   acknowledged so far is there with all its records, no record lacks its run, no
   run lacks records (and SQLite's integrity and foreign-key checks pass);
2. the server is restarted on the same database while the uploaders keep going:
   each one retries what got no answer (it may or may not have been stored: the
   retry must say 201 or 200, never store it twice) until everything is stored;
3. the API and the database then hold every content exactly once, complete.
"""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")

import sqlalchemy as sa
from hub_live import (
    BACKENDS,
    LiveHub,
    Outcomes,
    check_hub_contents,
    database_url,
    db_counts,
    dumps,
    make_result_doc,
    upload_once,
)

THREADS = 16
PER_THREAD = 25
KILL_AFTER_ACKS = 120


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_mid_upload_loses_nothing_acknowledged(backend, tmp_path):
    url = database_url(backend, tmp_path)
    keys = range(THREADS * PER_THREAD)
    docs = {k: make_result_doc(10_000 + k, host=f"crash-{k % 5}") for k in keys}
    bodies = {k: dumps(doc) for k, doc in docs.items()}
    outcomes = Outcomes()
    errors: list[str] = []
    stop = threading.Event()

    hub = LiveHub(url, log_dir=tmp_path).start()
    try:
        def uploader(t):
            client = hub.client()
            try:
                for k in range(t * PER_THREAD, (t + 1) * PER_THREAD):
                    deadline = time.monotonic() + 120
                    while not stop.is_set():
                        status = upload_once(client, k, bodies[k], outcomes)
                        if status in (200, 201):
                            break
                        if status not in (None, 503):       # refused: a bug, not the crash
                            errors.append(f"upload {k}: status {status} (log {hub.log_path})")
                            return
                        if time.monotonic() > deadline:
                            errors.append(f"upload {k}: no acknowledgement in 120 s")
                            return
                        time.sleep(0.05)        # server down or busy: retry the same content
            finally:
                client.close()

        threads = [threading.Thread(target=uploader, args=(t,), daemon=True) for t in range(THREADS)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 120
        while len(outcomes.acked()) < KILL_AFTER_ACKS:
            assert time.monotonic() < deadline, f"only {len(outcomes.acked())} acks in 120 s"
            assert not errors, errors[:3]
            time.sleep(0.01)
        hub.kill()
        # Every response counted now came from the process just killed.
        acked_before = {it[0]: it[2] for it in outcomes.acked()}
        assert KILL_AFTER_ACKS <= len(acked_before) < len(keys), "the kill came too late to be mid-way"

        # 1. The database as the killed server left it.
        db = db_counts(url)
        missing = [k for k, rid in acked_before.items() if rid not in db["documents"]]
        assert not missing, f"{len(missing)} acknowledged uploads lost by kill -9, e.g. {missing[:3]}"
        assert db["orphan_records"] == 0
        assert not db["incomplete_runs"], db["incomplete_runs"]
        for k, rid in acked_before.items():
            assert db["n_records"][rid] == len(docs[k]["records"])
        if backend == "sqlite":
            engine = sa.create_engine(url)
            with engine.connect() as c:
                assert c.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
                assert c.execute(sa.text("PRAGMA foreign_key_check")).all() == []
            engine.dispose()
        stored_at_kill = db["runs"]

        # 2. Back up on the same database; the uploaders retry and finish.
        time.sleep(0.3)             # let uploaders meet the dead port (connection refused)
        hub.restart()
        for th in threads:
            th.join(timeout=240)
        stop.set()
        assert not any(th.is_alive() for th in threads), "uploaders hung"
        assert not errors, errors[:3]

        # Uploads cut off by the kill (connection reset / closed, not refused): the kill
        # really was mid-upload.
        lost = {it[0] for it in outcomes.items
                if it[1] is None and "Refused" not in (it[4] or "")}
        assert lost, "no upload was in flight when the server was killed"

        # 3. Everything is stored exactly once.
        summary = check_hub_contents(hub, outcomes, docs, maybe_stored=lost)
        assert summary["stored"] == len(keys) == summary["acked"]
        for k, rid in acked_before.items():     # ids did not change across the restart
            assert {it[2] for it in outcomes.acked() if it[0] == k} == {rid}
        print(f"\n{backend}: killed after {len(acked_before)} acks ({stored_at_kill} runs in the database), "
              f"{len(lost)} uploads cut off, statuses {outcomes.by_status()}")
    finally:
        stop.set()
        hub.stop()
