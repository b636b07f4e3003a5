"""``gpubench hub``: run the results hub server and manage its upload tokens.

Only click is imported at module level: FastAPI, SQLAlchemy and friends load
inside the commands, so ``gpubench --help`` stays fast and a core install (no
``hub`` extra) still has a working CLI that says what to install.
"""

from __future__ import annotations

import os

import click

from gpubench.errors import GpubenchError

DEFAULT_URL = "sqlite:///gpubench-hub.db"
URL_HELP = "database URL: sqlite:///PATH or postgresql://USER:PASS@HOST/DB " \
           "(default: $GPUBENCH_DATABASE_URL, else sqlite:///gpubench-hub.db here)"


def _url(url: str | None) -> str:
    return url or os.environ.get("GPUBENCH_DATABASE_URL") or DEFAULT_URL


def _need_extra() -> None:
    missing = []
    for module in ("fastapi", "sqlmodel", "alembic", "uvicorn", "jinja2"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise GpubenchError(f"the hub needs {', '.join(missing)}: pip install 'gpubench[hub]'")


def _migrated_engine(url: str):
    """An engine on a database at the current schema, or a one-line GpubenchError."""
    from sqlalchemy.exc import SQLAlchemyError

    from gpubench.hub import store

    engine = store.create_engine(url)
    try:
        store.migrate(engine)
    except SQLAlchemyError as e:
        engine.dispose()
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise GpubenchError(f"database {store.safe_url(url)}: {reason[0] if reason else type(e).__name__}") \
            from None
    return engine


@click.group()
def hub():
    """The results hub: a server where result files are shared and compared."""


@hub.command()
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDRESS", help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), metavar="PORT")
@click.option("--database-url", metavar="URL", help=URL_HELP)
@click.option("--private-reads", is_flag=True, help="GET requests need a token too")
@click.option("--max-upload-mib", default=10.0, show_default=True, type=click.FloatRange(min=0.001), metavar="MIB",
              help="largest result file accepted")
@click.option("--base-url", metavar="URL", help="public URL of the hub (for links in responses), e.g. https://hub.example.org")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), metavar="N",
              help="server processes (PostgreSQL recommended above 1)")
def serve(host, port, database_url, private_reads, max_upload_mib, base_url, workers):
    """Migrate the database to the current schema, then serve the hub."""
    _need_extra()
    import uvicorn

    from gpubench.hub import store

    url = _url(database_url)
    _migrated_engine(url).dispose()
    # The app is built by a factory reading these variables, so --workers > 1 works
    # (each worker process builds its own app and engine).
    os.environ["GPUBENCH_HUB_DATABASE_URL"] = url
    os.environ["GPUBENCH_HUB_PUBLIC_READS"] = "0" if private_reads else "1"
    os.environ["GPUBENCH_HUB_MAX_UPLOAD_BYTES"] = str(int(max_upload_mib * 2**20))
    if base_url:
        os.environ["GPUBENCH_HUB_BASE_URL"] = base_url
    else:
        os.environ.pop("GPUBENCH_HUB_BASE_URL", None)
    click.echo(f"gpubench hub: {store.safe_url(url)} · http://{host}:{port}/ "
               f"· reads {'need a token' if private_reads else 'public'}", err=True)
    uvicorn.run("gpubench.hub.commands:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="info", proxy_headers=True)


def app_from_env():
    """The app `hub serve` configured through the environment (uvicorn's factory)."""
    from gpubench.hub.app import create_app

    return create_app(os.environ["GPUBENCH_HUB_DATABASE_URL"],
                      public_reads=os.environ.get("GPUBENCH_HUB_PUBLIC_READS", "1") != "0",
                      max_upload_bytes=int(os.environ.get("GPUBENCH_HUB_MAX_UPLOAD_BYTES") or 10 * 2**20),
                      base_url=os.environ.get("GPUBENCH_HUB_BASE_URL") or None)


def _in_session(database_url, fn):
    """``fn(session)`` on the migrated database, the engine closed afterwards."""
    from gpubench.hub import store

    engine = _migrated_engine(_url(database_url))
    try:
        with store.session_factory(engine)() as s:
            return fn(s)
    finally:
        engine.dispose()


@hub.group()
def token():
    """Upload tokens (only their SHA-256 is stored)."""


@token.command("create")
@click.argument("name")
@click.option("--database-url", metavar="URL", help=URL_HELP)
def token_create(name, database_url):
    """Create a token for NAME and print it (once: it cannot be shown again)."""
    _need_extra()
    from gpubench.hub.auth import create_token

    plaintext = _in_session(database_url, lambda s: create_token(s, name))
    click.echo(plaintext)
    click.echo(f"token {name!r} created. It is not stored anywhere (only its hash is): copy it now. "
               "Upload with: curl -H 'Authorization: Bearer <token>' --data-binary @FILE.json "
               "<hub>/api/v1/runs", err=True)


@token.command("revoke")
@click.argument("name")
@click.option("--database-url", metavar="URL", help=URL_HELP)
def token_revoke(name, database_url):
    """Revoke the token of NAME: uploads with it get 401 from now on."""
    _need_extra()
    from gpubench.hub.auth import revoke_token

    _in_session(database_url, lambda s: revoke_token(s, name))
    click.echo(f"token {name!r} revoked", err=True)
