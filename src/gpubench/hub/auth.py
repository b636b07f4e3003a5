"""Upload tokens: who may write (and, with private reads, read).

A token is 32 random bytes (``secrets.token_urlsafe``) shown once when created;
the database keeps only its SHA-256, so a copy of the database gives no one the
right to upload. Checking compares SHA-256 digests with ``hmac.compare_digest``
against every active token, so the time taken does not depend on how much of a
guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timezone

import sqlalchemy as sa
from fastapi import HTTPException, Request
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gpubench.errors import GpubenchError
from gpubench.hub import vocabulary as V
from gpubench.hub.models import TokenRow

_BEARER = "bearer"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise GpubenchError("a token needs a name (who or what uploads with it)")
    if len(name) > V.NAME_MAX_CHARS or any(not c.isprintable() for c in name):
        raise GpubenchError(f"token name {name[:40]!r}: use up to {V.NAME_MAX_CHARS} printable characters")
    return name


def create_token(session: Session, name: str) -> str:
    """A new token for ``name``; returns the plaintext, which is not stored anywhere.
    A revoked name can be given a new token; an active one cannot (revoke it first)."""
    name = _check_name(name)
    token = secrets.token_urlsafe(32)
    row = session.execute(sa.select(TokenRow).where(TokenRow.name == name)).scalar_one_or_none()
    if row is not None and row.revoked_at is None:
        raise GpubenchError(f"a token named {name!r} already exists and is active; "
                            f"revoke it first (gpubench hub token revoke {name}) or choose another name")
    if row is None:
        session.add(TokenRow(name=name, token_sha256=token_hash(token), created_at=_now()))
    else:
        row.token_sha256, row.created_at, row.revoked_at = token_hash(token), _now(), None
    try:
        session.commit()
    except IntegrityError:      # the same name created concurrently
        session.rollback()
        raise GpubenchError(f"a token named {name!r} already exists") from None
    return token


def revoke_token(session: Session, name: str) -> None:
    row = session.execute(sa.select(TokenRow).where(TokenRow.name == name)).scalar_one_or_none()
    if row is None:
        raise GpubenchError(f"no token named {name!r}")
    if row.revoked_at is not None:
        raise GpubenchError(f"the token named {name!r} is already revoked")
    row.revoked_at = _now()
    session.commit()


def check_token(session: Session, token: str) -> str | None:
    """The name of the active token equal to ``token``, or None."""
    digest = token_hash(token).encode("ascii")
    rows = session.execute(sa.select(TokenRow.name, TokenRow.token_sha256)
                           .where(TokenRow.revoked_at.is_(None))).all()
    found = None
    for name, stored in rows:       # no early exit: every active token is compared
        if hmac.compare_digest(digest, stored.encode("ascii")) and found is None:
            found = name
    return found


def unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail={"field": "Authorization", "message": message},
                         headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized("missing: send Authorization: Bearer <token> "
                           "(a token comes from gpubench hub token create)")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _BEARER or not token:
        raise unauthorized("not a bearer token: send Authorization: Bearer <token>")
    return token


def require_token(request: Request) -> str:
    """FastAPI dependency: the name of the caller's active token, or 401."""
    token = bearer_token(request)
    if len(token) > 200:
        raise unauthorized("invalid or revoked token")
    sf = request.app.state.hub.session_factory
    with sf() as s:
        name = check_token(s, token)
    if name is None:
        raise unauthorized("invalid or revoked token")
    return name


def require_read(request: Request) -> str | None:
    """FastAPI dependency for reads: nobody needed when reads are public."""
    if request.app.state.hub.public_reads:
        return None
    return require_token(request)
