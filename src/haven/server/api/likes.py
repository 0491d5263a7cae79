"""Likes: `POST`/`DELETE /api/{models|datasets}/{ns}/{name}/like`, `GET .../likers` and
`GET /api/users/{name}/likes`, the routes huggingface_hub's `unlike()`, `list_repo_likers()` and
`list_liked_repos()` call. The web pages' like button goes through `set_like` too.

A like is a change to the caller's account, so it takes a write token (read tokens change
nothing). A private repository stays a 404 to whoever may not read it, and never shows in
anyone's list of likes for such a caller. `repos.likes` counts the rows of `likes`, kept in step
with atomic increments.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import auth
from ..db import Like, Repo, User
from .common import ApiError, require_user
from .deps import CallerDep, ReadableRepo, SessionDep

router = APIRouter()


def set_like(session: Session, user: User, repo: Repo, liked: bool) -> int:
    """Make `user` like (or stop liking) `repo`; returns the repository's like count. Liking twice
    (or unliking what was never liked) changes nothing."""
    existing = session.get(Like, (user.id, repo.id))
    step = 0
    if liked and existing is None:
        session.add(Like(user_id=user.id, repo_id=repo.id))
        step = 1
    elif not liked and existing is not None:
        session.delete(existing)
        step = -1
    if step:
        session.flush()
        session.execute(update(Repo).where(Repo.id == repo.id).values(likes=Repo.likes + step))
        session.refresh(repo, ["likes"])
    return repo.likes


def likes_of(session: Session, user_id: int, repo_id: int) -> bool:
    return session.get(Like, (user_id, repo_id)) is not None


def _liker(caller: auth.Principal) -> User:
    require_user(caller)
    if caller.role != "write":
        raise ApiError(403, "this token is read-only: a like changes your account, so use a token with the 'write' role")
    return caller.user


@router.post("/api/{plural}/{ns}/{name}/like")
def like(repo: ReadableRepo, session: SessionDep, caller: CallerDep) -> dict:
    return {"liked": True, "likes": set_like(session, _liker(caller), repo, True)}


@router.delete("/api/{plural}/{ns}/{name}/like")
def unlike(repo: ReadableRepo, session: SessionDep, caller: CallerDep) -> dict:
    return {"liked": False, "likes": set_like(session, _liker(caller), repo, False)}


@router.get("/api/{plural}/{ns}/{name}/likers")
def likers(repo: ReadableRepo, session: SessionDep) -> list[dict]:
    rows = session.execute(
        select(User).join(Like, Like.user_id == User.id).where(Like.repo_id == repo.id).order_by(Like.created_at)
    ).scalars()
    return [{"type": "user", "user": u.name, "fullname": u.fullname or u.name, "avatarUrl": ""} for u in rows]


@router.get("/api/users/{name}/likes")
def user_likes(name: str, session: SessionDep, caller: CallerDep) -> list[dict]:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise ApiError(404, f"no user named {name!r} on this hub")
    rows = session.execute(
        select(Like, Repo).join(Repo, Repo.id == Like.repo_id).where(Like.user_id == user.id)
        .order_by(Like.created_at.desc())
    )
    return [
        {
            "createdAt": liked.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "repo": {"name": repo.repo_id, "type": repo.type},
        }
        for liked, repo in rows
        if auth.can_read(caller, repo)
    ]
