"""Xet access tokens and signed xorb URLs.

A token is `xet_<payload>.<signature>`: the payload (base64url JSON) names one repository (by
primary key), a scope (`read` or `write`), the hub token it was issued to (by primary key; 0 for an
anonymous caller) and an expiry; the signature is an HMAC-SHA256 with the hub's secret. Nothing is
stored: a token is valid until it expires (TOKEN_TTL), and the CAS routes check the access behind
it again on every request (`cas.cas_grant`): the repository must still exist, the hub token must
not be revoked, and its user must still be allowed the scope on the repository. Access lost is a
401 at once, not up to TOKEN_TTL later; the client's refresh then gets the hub's answer (404).

A fetch URL authorises one byte range of one xorb until it expires: the CAS hands them out in
reconstructions and serves them itself (clients send them no token).
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from dataclasses import dataclass

from .. import auth

TOKEN_TTL = 900  # seconds; the client refreshes a token 60 s before it expires
FETCH_TTL = 900
PREFIX = "xet_"


class TokenError(Exception):
    """A token that is malformed, tampered with or expired (401: ask for a new one)."""


@dataclass(frozen=True)
class XetGrant:
    repo_pk: int
    scope: str  # "read" | "write"
    expires: int
    token_pk: int = 0  # the hub token it was issued to; 0: an anonymous caller

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def issue(secret: str, repo_pk: int, scope: str, token_pk: int = 0, ttl: int = TOKEN_TTL) -> str:
    """A token for `scope` on the repository with primary key `repo_pk`, for the caller holding
    the hub token `token_pk` (0: anonymous)."""
    if scope not in ("read", "write"):
        raise ValueError(f"unknown Xet token scope {scope!r}: read or write")
    grant = XetGrant(repo_pk, scope, int(time.time()) + ttl, token_pk)
    payload = base64.urlsafe_b64encode(
        json.dumps({"r": repo_pk, "s": scope, "e": grant.expires, "t": token_pk}).encode()
    )
    body = payload.decode().rstrip("=")
    return PREFIX + body + "." + auth.sign(secret, "xet-token", body)


def check(secret: str, token: str) -> XetGrant:
    """The grant a token carries; TokenError if it is not one this hub signed, or has expired."""
    if not token.startswith(PREFIX) or token.count(".") != 1:
        raise TokenError("not a Xet token of this hub: ask the hub for one (xet-read-token / xet-write-token)")
    body, sig = token[len(PREFIX) :].split(".")
    if not hmac.compare_digest(auth.sign(secret, "xet-token", body), sig):
        raise TokenError("the Xet token's signature does not match: ask the hub for a new token")
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        grant = XetGrant(int(data["r"]), str(data["s"]), int(data["e"]), int(data.get("t", 0)))
    except (ValueError, KeyError, TypeError):
        raise TokenError("the Xet token is malformed: ask the hub for a new token") from None
    if grant.expires < time.time():
        raise TokenError("the Xet token has expired: ask the hub for a new token")
    return grant


def fetch_query(secret: str, xorb: str, start: int, end: int, ttl: int = FETCH_TTL) -> str:
    """`range=START-END&exp=..&sig=..` for bytes [start, end] (inclusive) of a xorb."""
    exp = int(time.time()) + ttl
    return f"range={start}-{end}&exp={exp}&sig={auth.sign(secret, 'xet-fetch', xorb, start, end, exp)}"


def check_fetch(secret: str, xorb: str, start: int, end: int, exp: int, sig: str) -> bool:
    if exp < time.time():
        return False
    return hmac.compare_digest(auth.sign(secret, "xet-fetch", xorb, start, end, exp), sig)
