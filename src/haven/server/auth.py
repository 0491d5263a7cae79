"""Accounts, tokens and access rules.

Tokens look like `hv_<random>` and are stored as their sha256 only. A request authenticates
with `Authorization: Bearer <token>` (or HTTP Basic with the token as password, for git).
Access: public repos are readable by all; a private repo is visible only to its owner, the
members of its owning organisation, and admins, and answers exactly like a missing repo to
everyone else. Writing needs a write token of the owner, an org member (role write or admin),
or an admin.

Organisation roles: `admin` (manage members, write), `write` (write the org's repos, read its
private ones), `read` (read its private repos only). An org keeps at least one admin once it has
one: its last admin cannot leave, be removed or lose the role. Site admins (`users.is_admin`)
manage every org and can disable a user: a disabled user cannot sign in, their tokens and browser
sessions are refused, and their repositories stay.

Passwords (for the web pages) are hashed with scrypt (`hashlib.scrypt`, OpenSSL) under a
per-user random salt, the parameters stored with the hash. A browser session is a random id in
a cookie, stored as its sha256 in `sessions`; it identifies a user to the web pages only (the API
and git take tokens alone). Revoking a token deletes its row: the next request with it is a 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from .db import Membership, Org, Repo, Token, User, WebSession, utcnow
from .storage.paths import name_error

TOKEN_PREFIX = "hv_"
# first path segments of the web pages: no user or organization may take them as a name
RESERVED_NAMES = frozenset({
    "api", "models", "datasets", "spaces", "new", "join", "login", "logout", "settings", "organizations",
    "docs", "static", "-", "admin",
})
ORG_ROLES = ("admin", "write", "read")
DISABLED = "this account is disabled: ask a hub administrator to enable it again"
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # 32 MiB and about 0.1 s per hash
SESSION_DAYS = 30
LAST_USED_EVERY = timedelta(seconds=60)  # a token's last use is written at most once a minute


class AuthError(Exception):
    """A credential was presented but is not valid (-> 401)."""


class PasswordError(ValueError):
    """A password the hub will not store (too short, too long)."""


class MembershipError(ValueError):
    """An organisation membership change the hub refuses (unknown user, bad role, last admin)."""


def valid_name(name: str) -> bool:
    """A user, org, namespace or repo name, by storage's one rule (`paths.name_error`)."""
    return name_error(name) is None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Principal:
    """Who is calling: a user (with the token's role) or nobody."""

    user: User | None = None
    role: str = "read"  # the token's role
    token_name: str = ""
    orgs: dict[str, str] = field(default_factory=dict)  # org name -> membership role

    @property
    def anonymous(self) -> bool:
        return self.user is None

    @property
    def name(self) -> str:
        return self.user.name if self.user else ""


# -- account management (used by `haven admin` and the tests) -------------------------------------


def _check_new_name(name: str, what: str) -> None:
    if not valid_name(name):
        raise ValueError(f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-' (max 96)")
    if name.lower() in RESERVED_NAMES:
        raise ValueError(f"the name {name!r} is reserved for the hub's own pages: choose another")


def create_user(
    session: Session, name: str, *, admin: bool = False, fullname: str = "", password: str | None = None
) -> User:
    """A new user; with `password` they can also sign in to the web pages."""
    _check_new_name(name, "user")
    if session.scalar(select(User).where(User.name == name)) or session.scalar(
        select(Org).where(Org.name == name)
    ):
        raise ValueError(f"the name {name!r} is already taken by a user or an organization")
    user = User(name=name, is_admin=admin, fullname=fullname or name,
                password_hash=hash_password(password) if password is not None else None)
    session.add(user)
    session.flush()
    return user


def create_token(session: Session, user_name: str, role: str = "write", name: str = "") -> str:
    """Create a token for `user_name` and return it (only its hash is stored)."""
    if role not in ("read", "write"):
        raise ValueError(f"invalid token role {role!r}: use 'read' or 'write'")
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        raise ValueError(f"no user named {user_name!r}: create it first with `haven admin create-user`")
    token = TOKEN_PREFIX + secrets.token_urlsafe(30)
    session.add(
        Token(
            user_id=user.id,
            name=name or f"{role}-token",
            token_hash=hash_token(token),
            prefix=token[:8],
            role=role,
        )
    )
    session.flush()
    return token


def create_org(session: Session, name: str, members: list[str] = ()) -> Org:
    """The org `name` (created when missing) with `members` added as writers (`haven admin create-org`)."""
    org = session.scalar(select(Org).where(Org.name == name))
    if org is None:
        org = _new_org(session, name, "")
    for member in members:
        add_member(session, name, member)
    return org


def _new_org(session: Session, name: str, fullname: str) -> Org:
    _check_new_name(name, "organization")
    if session.scalar(select(User).where(User.name == name)):
        raise ValueError(f"the name {name!r} is already taken by a user")
    org = Org(name=name, fullname=fullname or name)
    session.add(org)
    session.flush()
    return org


def found_org(session: Session, name: str, creator: User, fullname: str = "") -> Org:
    """A new org (the web's /organizations/new) whose first admin is `creator`; a taken name is an error."""
    if session.scalar(select(Org).where(Org.name == name)):
        raise ValueError(f"the name {name!r} is already taken by an organization: choose another")
    org = _new_org(session, name, fullname)
    session.add(Membership(org_id=org.id, user_id=creator.id, role="admin"))
    session.flush()
    return org


def _membership(session: Session, org: Org, user: User) -> Membership | None:
    return session.scalar(select(Membership).where(Membership.org_id == org.id, Membership.user_id == user.id))


def _admin_count(session: Session, org: Org) -> int:
    return len(session.scalars(
        select(Membership.id).where(Membership.org_id == org.id, Membership.role == "admin")).all())


def add_member(session: Session, org_name: str, user_name: str, role: str = "write") -> None:
    """Add `user_name` to the org with `role`, or change their role. The last admin keeps the role."""
    if role not in ORG_ROLES:
        raise MembershipError(f"invalid role {role!r}: use one of {', '.join(ORG_ROLES)}")
    org = session.scalar(select(Org).where(Org.name == org_name))
    if org is None:
        raise MembershipError(f"no organization named {org_name!r}: create it first")
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        raise MembershipError(f"no user named {user_name!r} on this hub: check the name, or ask them to sign up")
    existing = _membership(session, org, user)
    if existing is None:
        session.add(Membership(org_id=org.id, user_id=user.id, role=role))
    else:
        if existing.role == "admin" and role != "admin" and _admin_count(session, org) == 1:
            raise MembershipError(f"{user_name} is the last admin of {org_name}: make another member admin first")
        existing.role = role
    session.flush()


def remove_member(session: Session, org_name: str, user_name: str) -> None:
    """Take `user_name` out of the org (removed by an admin, or leaving). The last admin stays."""
    org = session.scalar(select(Org).where(Org.name == org_name))
    user = session.scalar(select(User).where(User.name == user_name))
    row = _membership(session, org, user) if org is not None and user is not None else None
    if row is None:
        raise MembershipError(f"{user_name!r} is not a member of {org_name!r}")
    if row.role == "admin" and _admin_count(session, org) == 1:
        raise MembershipError(
            f"{user_name} is the last admin of {org_name}: make another member admin before they leave")
    session.delete(row)
    session.flush()


def org_members(session: Session, org: Org) -> list[tuple[User, str]]:
    """(user, role) of each member, admins first, then by name."""
    rows = session.execute(select(User, Membership.role).join(Membership, Membership.user_id == User.id)
                           .where(Membership.org_id == org.id))
    order = {role: i for i, role in enumerate(ORG_ROLES)}
    return sorted(((u, r) for u, r in rows), key=lambda ur: (order.get(ur[1], 9), ur[0].name.lower()))


def can_manage_org(p: Principal, org_name: str) -> bool:
    """Site admins and the org's admins manage its members."""
    return p.user is not None and (p.user.is_admin or p.orgs.get(org_name) == "admin")


def set_disabled(session: Session, user: User, disabled: bool) -> None:
    """Disable (or enable again) a user: their tokens and sessions stop working; their repos stay."""
    user.disabled = disabled
    if disabled:
        end_sessions(session, user)
    session.flush()


# -- authentication -------------------------------------------------------------------------------


def token_from_headers(authorization: str | None) -> str | None:
    """The token in a Bearer or Basic (password) Authorization header, or None when there is no
    header. A header naming a scheme but no credential ("Bearer", "Bearer ") is an AuthError: a
    client that meant to sign in must not be served as anonymous."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        if not value:
            raise AuthError("empty Bearer token: send 'Authorization: Bearer <token>', or no header at all")
        return value
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value).decode()
        except Exception as err:
            raise AuthError("malformed Basic credentials") from err
        user, _, password = decoded.partition(":")
        # git sends "user:token"; some tools put the token in the user name and a placeholder
        # password ("hv_...:x-oauth-basic"): take whichever half is a Haven token.
        if not password.startswith(TOKEN_PREFIX) and user.startswith(TOKEN_PREFIX):
            return user
        return password or user or None
    raise AuthError(f"unsupported authorization scheme {scheme!r}: use 'Bearer <token>'")


# Every request runs these: built once (building a statement costs as much as running it on SQLite).
# A token, its user and the user's organizations in one query (a row per membership).
_TOKEN_USER_ORGS = (
    select(Token, User, Org.name, Membership.role)
    .outerjoin(User, User.id == Token.user_id)
    .outerjoin(Membership, Membership.user_id == User.id)
    .outerjoin(Org, Org.id == Membership.org_id)
    .where(Token.token_hash == bindparam("token_hash"))
)
_USER_ORGS = (
    select(Org.name, Membership.role)
    .join(Org, Org.id == Membership.org_id)
    .where(Membership.user_id == bindparam("user_id"))
)
_SESSION_USER = (
    select(WebSession, User)
    .outerjoin(User, User.id == WebSession.user_id)
    .where(WebSession.id_hash == bindparam("id_hash"))
)


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The caller behind an Authorization header. Raises AuthError for a wrong token."""
    token = token_from_headers(authorization)
    if token is None:
        return Principal()
    rows = session.execute(_TOKEN_USER_ORGS, {"token_hash": hash_token(token)}).all()
    if not rows:
        raise AuthError("invalid token: check it, or create a new one with `haven admin create-token`")
    row, user = rows[0][0], rows[0][1]
    if user is None:
        raise AuthError("invalid token: its user no longer exists")
    if user.disabled:
        raise AuthError(DISABLED)
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        # its own short transaction: a request refused later (403, 404 ...) is still a use
        with session.get_bind().begin() as conn:
            conn.execute(update(Token).where(Token.id == row.id).values(last_used_at=now))
    orgs = {org: member_role for _, _, org, member_role in rows if org is not None}
    return Principal(user=user, role=row.role, token_name=row.name, orgs=orgs)


def principal_for(session: Session, user: User, *, role: str, token_name: str = "") -> Principal:
    """The Principal of `user` acting with `role` ("read" | "write"), with their organizations."""
    orgs = {name: member_role for name, member_role in session.execute(_USER_ORGS, {"user_id": user.id})}
    return Principal(user=user, role=role, token_name=token_name, orgs=orgs)


# -- passwords ------------------------------------------------------------------------------------


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n * p, dklen=32)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordError(f"the password is too long: use at most {MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64) for a password that passes the rules."""
    check_password_rules(password)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


_DUMMY_HASH: list[str] = []  # computed once, so a missing user costs as long as a wrong password


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored` (constant-time compare). A user without a password,
    or a password over the length limit, never matches, after the same work as a real check."""
    real = bool(stored)
    if not real:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_password("x" * MIN_PASSWORD))
        stored = _DUMMY_HASH[0]
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = _scrypt(password[:MAX_PASSWORD], base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected) and real and len(password) <= MAX_PASSWORD


def set_password(session: Session, user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    session.flush()


# -- browser sessions ------------------------------------------------------------------------------


def create_session(session: Session, user: User) -> str:
    """A new browser session for `user`; returns the id for the cookie (only its hash is stored)."""
    sid = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))  # forget expired sessions
    session.add(WebSession(id_hash=hash_token(sid), user_id=user.id, created_at=now, last_seen_at=now,
                           expires_at=now + timedelta(days=SESSION_DAYS)))
    session.flush()
    return sid


def find_session(session: Session, sid: str | None) -> WebSession | None:
    """The live session behind a cookie value, its last use refreshed; None if unknown or expired."""
    found = find_session_user(session, sid)
    return found[0] if found else None


def find_session_user(session: Session, sid: str | None) -> tuple[WebSession, User] | None:
    """`find_session` with the session's user, both read by one query (the session's identity map
    holds rows weakly: a caller that let the user go would read it again)."""
    if not sid:
        return None
    found = session.execute(_SESSION_USER, {"id_hash": hash_token(sid)}).first()
    now = utcnow()
    if found is None:
        return None
    row, user = found
    if row.expires_at <= now or user is None or user.disabled:  # a disabled user's sessions end too
        session.delete(row)
        return None
    if now - row.last_seen_at > LAST_USED_EVERY:
        row.last_seen_at = now
    return row, user


def end_sessions(session: Session, user: User, *, keep: WebSession | None = None) -> None:
    """Sign `user` out everywhere (except the session `keep`), e.g. after a password change."""
    query = delete(WebSession).where(WebSession.user_id == user.id)
    if keep is not None:
        query = query.where(WebSession.id != keep.id)
    session.execute(query)


# -- tokens of a user (the tokens page) -----------------------------------------------------------


def user_tokens(session: Session, user: User) -> list[Token]:
    return list(session.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.created_at.desc())))


def revoke_token(session: Session, user: User, token_id: int) -> bool:
    """Delete one of `user`'s tokens; False when they have no token with that id."""
    row = session.get(Token, token_id)
    if row is None or row.user_id != user.id:
        return False
    session.delete(row)
    session.flush()
    return True


# -- authorisation --------------------------------------------------------------------------------


def is_member(p: Principal, namespace: str) -> bool:
    """The caller owns `namespace` (it is their user name, or an org they write to)."""
    if p.user is None:
        return False
    return p.user.is_admin or namespace == p.user.name or p.orgs.get(namespace) in ("write", "admin")


def can_read(p: Principal, repo: Repo) -> bool:
    if not repo.private:
        return True
    if p.user is None:
        return False
    return p.user.is_admin or repo.namespace == p.user.name or repo.namespace in p.orgs


def can_write_namespace(p: Principal, namespace: str) -> bool:
    return p.role == "write" and is_member(p, namespace)


def can_administer(p: Principal, namespace: str) -> bool:
    """The caller may change a repository's settings, move or delete it (with a write token): its
    owner, an admin of its organisation, or a site admin. Writing files needs only `is_member`."""
    if p.user is None or p.role != "write":
        return False
    return p.user.is_admin or namespace == p.user.name or p.orgs.get(namespace) == "admin"


# -- signed URLs (LFS transfers that carry no auth header) ----------------------------------------


def sign(secret: str, *parts: str | int) -> str:
    msg = "\n".join(str(p) for p in parts).encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_query(secret: str, action: str, oid: str, size: int, ttl: int = 3600, *, repo: int) -> str:
    """`repo=..&exp=..&sig=..` authorising `action` on one object for one repository (by key)."""
    expires = int(time.time()) + ttl
    return f"repo={repo}&exp={expires}&sig={sign(secret, action, repo, oid, size, expires)}"


def check_signature(
    secret: str, action: str, oid: str, size: int, expires: str, sig: str, *, repo: str
) -> bool:
    try:
        exp = int(expires)
        repo_pk = int(repo)
    except ValueError:
        return False
    if exp < time.time():
        return False
    return hmac.compare_digest(sign(secret, action, repo_pk, oid, size, exp), sig)
