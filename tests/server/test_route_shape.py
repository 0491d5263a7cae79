"""The shape of the server code (issue 12): every route takes its database session, caller and
repository as `Annotated` dependencies and its body as a Pydantic model, so the routes the next
issues add copy that shape; and once a commit has moved its branch, nothing fails the request
(the index is refreshed in a session of its own)."""

from __future__ import annotations

import base64
import inspect
import json
import typing

import pytest
from fastapi import params
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

LFS_JSON = "application/vnd.git-lfs+json"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """An in-process hub (create_app over a temporary data dir) and a user with a write token."""
    from haven.server import auth, db
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path_factory.mktemp("shape") / "data")
    settings.prepare()
    db.upgrade(settings.db_url)
    app = create_app(settings)
    with app.state.sessionmaker() as session:
        auth.create_user(session, "ada")
        token = auth.create_token(session, "ada", "write")
        session.commit()
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["authorization"] = f"Bearer {token}"
        yield app, client


# -- the shape of every route ---------------------------------------------------------------------


def _routes(routes, prefix: str = ""):
    """(path, route) for every endpoint route, through included routers (FastAPI >= 0.12x keeps
    them as included-router entries rather than copies)."""
    for route in routes:
        if hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            yield from _routes(route.original_router.routes, prefix + getattr(context, "prefix", ""))
        elif hasattr(route, "endpoint"):
            yield prefix + route.path, route


def _calls(route):
    """The endpoint and every dependency callable under it (a plain Starlette route: its endpoint)."""
    dependant = getattr(route, "dependant", None)
    return _dependant_calls(dependant) if dependant is not None else [route.endpoint]


def _dependant_calls(dependant):
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _dependant_calls(sub)


def _problems(call) -> list[str]:
    found = []
    hints = typing.get_type_hints(call, include_extras=True)
    for name, param in inspect.signature(call).parameters.items():
        if isinstance(param.default, params.Depends):
            found.append(f"{name}: a Depends() default instead of an Annotated dependency (deps.py)")
        if isinstance(param.default, params.Body) and not isinstance(param.default, params.Form):
            found.append(f"{name}: a Body() default instead of a Pydantic model (bodies.py)")
        hint = hints.get(name)
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        if base is dict or typing.get_origin(base) is dict:
            found.append(f"{name}: a dict body instead of a Pydantic model (bodies.py)")
        if base is Session and typing.get_origin(hint) is not typing.Annotated:
            found.append(f"{name}: a raw Session parameter instead of SessionDep")
    return found


def test_every_route_takes_annotated_dependencies_and_model_bodies(hub):
    app, _ = hub
    routes = list(_routes(app.routes))
    assert len(routes) > 30  # every area is walked, included routers too
    problems = []
    for path, route in routes:
        for call in _calls(route):
            problems += [f"{path} ({call.__module__}.{call.__name__}) {p}" for p in _problems(call)]
        source = inspect.getsource(route.endpoint)
        for hand_made in ("load_repo(", "session_scope(", "sessionmaker()"):
            if hand_made in source:
                problems.append(f"{path}: {hand_made} in the route function; take ReadableRepo/SessionDep")
    assert not problems, "\n".join(problems)


def test_the_shape_check_catches_the_old_style():
    """Control: the check above finds each old pattern."""
    from fastapi import Body, Depends

    from haven.server.api.common import get_session

    def old(body: dict = Body(...), session: Session = Depends(get_session)) -> dict:  # noqa: B008
        return body

    found = _problems(old)
    assert any("dict body" in p for p in found) and any("Depends() default" in p for p in found)
    assert any("Body() default" in p for p in found)


# -- after the branch moved, the commit answers 200 -------------------------------------------------


def _ndjson(summary: str, files: dict[str, bytes]) -> bytes:
    lines = [{"key": "header", "value": {"summary": summary}}]
    lines += [
        {"key": "file", "value": {"path": p, "content": base64.b64encode(c).decode(), "encoding": "base64"}}
        for p, c in files.items()
    ]
    return b"\n".join(json.dumps(x).encode() for x in lines)


def _commit(client: TestClient, repo_id: str, files: dict[str, bytes]):
    return client.post(
        f"/api/models/{repo_id}/commit/main",
        content=_ndjson("add files", files),
        headers={"content-type": "application/x-ndjson"},
    )


def test_a_failed_index_refresh_does_not_fail_the_commit(hub, monkeypatch):
    """The refresh ran in the request's session: a database failure there answered 500 for a
    commit whose branch had already moved. Now it runs apart, is logged, and the next read
    re-indexes the repository."""
    from haven.server.api import index
    from haven.server.db import Repo

    app, client = hub
    assert client.post("/api/repos/create", json={"name": "apart"}).status_code == 200
    real = index.refresh

    def broken(session, store, repo):
        raise OperationalError("UPDATE repos SET ...", {}, Exception("database is locked"))

    monkeypatch.setattr(index, "refresh", broken)
    card = b"---\nlicense: mit\ntags:\n- shape-test\n---\n# apart\n"
    r = _commit(client, "ada/apart", {"README.md": card, "notes.txt": b"kept"})
    assert r.status_code == 200, r.text
    oid = r.json()["commitOid"]
    served = client.get("/ada/apart/resolve/main/notes.txt")
    assert served.status_code == 200 and served.content == b"kept"
    assert served.headers["x-repo-commit"] == oid
    with app.state.sessionmaker() as session:  # the index still names the old head: marked for re-index
        row = session.scalar(select(Repo).where(Repo.namespace == "ada", Repo.name == "apart"))
        assert row.sha != oid and "shape-test" not in (row.tags or [])

    monkeypatch.setattr(index, "refresh", real)
    info = client.get("/api/models/ada/apart")
    assert info.status_code == 200
    assert info.json()["sha"] == oid and info.json()["cardData"]["license"] == "mit"
    with app.state.sessionmaker() as session:
        row = session.scalar(select(Repo).where(Repo.namespace == "ada", Repo.name == "apart"))
        assert row.sha == oid and "shape-test" in row.tags


def test_the_refresh_apart_is_committed(hub):
    """Control: with a working refresh, the commit's index lands without any read."""
    from haven.server.db import Repo

    app, client = hub
    assert client.post("/api/repos/create", json={"name": "indexed"}).status_code == 200
    r = _commit(client, "ada/indexed", {"README.md": b"---\ntags:\n- landed\n---\n"})
    assert r.status_code == 200, r.text
    with app.state.sessionmaker() as session:
        row = session.scalar(select(Repo).where(Repo.namespace == "ada", Repo.name == "indexed"))
        assert row.sha == r.json()["commitOid"] and "landed" in row.tags


# -- bodies: Pydantic models, 400s naming the field -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/repos/create", {"name": "x", "resourceGroupId": "rg"}, "resourceGroupId"),
        ("POST", "/api/repos/create", {"name": "x", "region": "eu"}, "region"),
        ("DELETE", "/api/repos/delete", {"name": "x", "confirm": True}, "confirm"),
        ("POST", "/api/repos/move", {"fromRepo": "ada/x", "toRepo": "ada/y", "force": True}, "force"),
        ("PUT", "/api/models/ada/x/settings", {"discussionsDisabled": True}, "discussionsDisabled"),
    ],
)
def test_unknown_fields_are_refused_by_name(hub, method, path, body, field):
    """These fields used to be ignored (the hand-parsed dict read only the keys it knew)."""
    _, client = hub
    if not client.get("/api/models/ada/x").status_code == 200:
        assert client.post("/api/repos/create", json={"name": "x"}).status_code == 200
    r = client.request(method, path, json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"] and "not permitted" in r.json()["error"]
    assert client.get("/api/models/ada/x").status_code == 200  # nothing was deleted or moved


def test_body_errors_name_the_field(hub):
    _, client = hub
    r = client.post("/api/repos/create", json={"organization": "ada"})
    assert r.status_code == 400 and "name: Field required" in r.json()["error"]
    r = client.post("/api/repos/create", json={"name": "s", "type": "space"})
    assert r.status_code == 400 and "unsupported repository type 'space'" in r.json()["error"]
    r = client.post("/api/repos/create", json={"name": "v", "visibility": "secret"})
    assert r.status_code == 400 and "visibility" in r.json()["error"]
    r = client.put("/api/models/ada/x/settings", json={"gated": "auto"})
    assert r.status_code == 400 and "gated repositories are not supported" in r.json()["error"]
    r = client.post("/api/models/ada/x/paths-info/main", json={"paths": [1, {"a": 2}]})
    assert r.status_code == 400 and "paths.1" in r.json()["error"]


def test_paths_info_takes_a_form_or_json(hub):
    _, client = hub
    assert client.post("/api/repos/create", json={"name": "paths"}).status_code == 200
    assert _commit(client, "ada/paths", {"a.txt": b"a", "d/b.txt": b"b"}).status_code == 200
    form = client.post("/api/models/ada/paths/paths-info/main", data={"paths": ["a.txt", "d/b.txt", "no"]})
    as_json = client.post("/api/models/ada/paths/paths-info/main", json={"paths": ["a.txt", "d/b.txt", "no"]})
    assert form.status_code == as_json.status_code == 200
    assert [e["path"] for e in form.json()] == [e["path"] for e in as_json.json()] == ["a.txt", "d/b.txt"]
    expanded = client.post("/api/models/ada/paths/paths-info/main", data={"paths": "a.txt", "expand": "True"})
    assert expanded.json()[0]["lastCommit"]["title"] == "add files"


def test_lfs_routes_answer_in_the_lfs_shape(hub):
    """Validation errors and refusals of the batch API and verify are `{"message"}` bodies of
    the LFS media type, which git-lfs shows; the rest of the API answers `{"error"}`."""
    _, client = hub
    headers = {"content-type": LFS_JSON, "accept": LFS_JSON}
    url = "/ada/x.git/info/lfs/objects/batch"
    bad = client.post(url, json={"operation": "copy", "objects": []}, headers=headers)
    assert bad.status_code == 400 and "operation" in bad.json()["message"]
    assert bad.headers["content-type"].startswith(LFS_JSON)
    algo = client.post(url, json={"operation": "upload", "objects": [], "hash_algo": "sha1"}, headers=headers)
    assert algo.status_code == 409 and "sha256" in algo.json()["message"]
    anonymous = client.post(
        url, json={"operation": "upload", "objects": []}, headers={**headers, "authorization": ""}
    )
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert "message" in anonymous.json()
    missing = client.post("/ada/none.git/info/lfs/verify", json={"oid": "a" * 64, "size": 1}, headers=headers)
    assert missing.status_code == 404 and "message" in missing.json()
    verify = client.post("/ada/x.git/info/lfs/verify", json={"oid": "A" * 64, "size": True}, headers=headers)
    assert verify.status_code == 400 and "oid" in verify.json()["message"] and "size" in verify.json()["message"]
    newline = client.post("/ada/x.git/info/lfs/verify", json={"oid": "a" * 64 + "\n", "size": 1}, headers=headers)
    assert newline.status_code == 400 and "oid" in newline.json()["message"]


def test_a_commit_checks_its_caller_before_reading_the_body(hub):
    """The NDJSON body streams in after the caller and repository are checked: an anonymous
    commit is a 401, not a parse of whatever it sent."""
    _, client = hub
    r = client.post(
        "/api/models/ada/x/commit/main",
        content=b"not json at all\n" * 10,
        headers={"content-type": "application/x-ndjson", "authorization": ""},
    )
    assert r.status_code == 401, r.text
