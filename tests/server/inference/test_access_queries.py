"""The access check of an inference request (`service._readable_model`): how many SQL statements
it costs (the token, its user and their organizations in one query, then the repository), and that
nothing is remembered across requests: a revoked token, a lost membership or a disabled user counts
on the very next request."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import event, select
from starlette.requests import Request

from haven.server import auth, db
from haven.server.api.common import ApiError
from haven.server.inference.service import _readable_model


@pytest.fixture
def hub(tmp_path):
    url = f"sqlite:///{tmp_path / 'haven.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    maker = db.make_sessionmaker(engine)
    with maker() as s:
        auth.create_user(s, "ann")
        auth.create_user(s, "bob")
        auth.create_org(s, "labs", ["ann"])
        auth.create_org(s, "other", ["ann"])
        token = auth.create_token(s, "ann", "read")
        sid = auth.create_session(s, s.scalar(select(db.User).where(db.User.name == "ann")))
        s.add(db.Repo(type="model", namespace="labs", name="m", private=True, pipeline_tag="fill-mask"))
        s.commit()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    app = SimpleNamespace(state=SimpleNamespace(sessionmaker=maker, settings=SimpleNamespace(secret="s" * 32)))
    yield SimpleNamespace(maker=maker, token=token, sid=sid, app=app, statements=statements)
    engine.dispose()


def request(hub, *, token: str | None = None, cookie: str | None = None) -> Request:
    headers = []
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if cookie:
        headers.append((b"cookie", f"haven_session={cookie}".encode()))
    return Request({"type": "http", "app": hub.app, "headers": headers, "method": "POST", "path": "/",
                    "query_string": b""})


def counted(hub, req: Request):
    _readable_model(req, "labs/m")  # the first use writes the token's last use: not the steady state
    hub.statements.clear()
    assert _readable_model(req, "labs/m") == ("fill-mask", "main")
    return len(hub.statements)


def test_a_token_check_is_two_queries(hub):
    assert counted(hub, request(hub, token=hub.token)) == 2  # was 4: token, user, memberships, repo


def test_a_browser_session_check_is_three_queries(hub):
    assert counted(hub, request(hub, cookie=hub.sid)) == 3  # was 5: session, user (twice), memberships, repo


def test_access_taken_away_counts_on_the_next_request(hub):
    assert _readable_model(request(hub, token=hub.token), "labs/m")[0] == "fill-mask"
    with hub.maker() as s:
        auth.remove_member(s, "labs", "ann")
        s.commit()
    with pytest.raises(ApiError) as err:
        _readable_model(request(hub, token=hub.token), "labs/m")
    assert err.value.status == 404  # a private repo the caller cannot see
    with hub.maker() as s:
        auth.add_member(s, "labs", "ann", "read")
        s.commit()
    assert _readable_model(request(hub, token=hub.token), "labs/m")[0] == "fill-mask"  # a read member reads
    with hub.maker() as s:
        ann = s.scalar(select(db.User).where(db.User.name == "ann"))
        (row,) = auth.user_tokens(s, ann)
        assert auth.revoke_token(s, ann, row.id)
        s.commit()
    with pytest.raises(ApiError) as err:
        _readable_model(request(hub, token=hub.token), "labs/m")
    assert err.value.status == 401


def test_a_disabled_user_is_refused_by_token_and_by_session(hub):
    with hub.maker() as s:
        auth.set_disabled(s, s.scalar(select(db.User).where(db.User.name == "ann")), True)
        s.commit()
    with pytest.raises(ApiError) as err:
        _readable_model(request(hub, token=hub.token), "labs/m")
    assert err.value.status == 401 and "disabled" in err.value.message
    with pytest.raises(ApiError) as err:  # the session ends; the page's caller is anonymous
        _readable_model(request(hub, cookie=hub.sid), "labs/m")
    assert err.value.status == 404


def test_a_token_without_memberships_reads_only_public_and_own_repos(hub):
    with hub.maker() as s:
        token = auth.create_token(s, "bob", "read")
        s.add(db.Repo(type="model", namespace="bob", name="mine", private=True, pipeline_tag="fill-mask"))
        s.commit()
    with hub.maker() as s:
        p = auth.authenticate(s, f"Bearer {token}")
    assert p.name == "bob" and p.orgs == {} and p.role == "read"
    assert _readable_model(request(hub, token=token), "bob/mine")[0] == "fill-mask"
    with pytest.raises(ApiError):
        _readable_model(request(hub, token=token), "labs/m")
