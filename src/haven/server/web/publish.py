"""Publishing from the browser: `/new`, `.../upload/{rev}`, `.../edit/{rev}/{path}`, deleting a
file, and `.../settings` (visibility, rename or transfer, delete).

Every change goes through the API's own code, so the browser and the clients get the same rules:
repositories through `api.repos` (create, move, delete, visibility) and files through
`api.commits.commit_files` (one commit per form, the card checked, LFS chosen by `upload_mode`).
Each commit form carries the commit it was rendered from; a branch that has moved since is refused
(the storage's stale-parent check) with a page that says to reload. LFS bytes go into the store
through `LfsStore.put`, which hashes while writing and keeps nothing that does not verify.
Every form needs the signed-in session's CSRF token; a repository the viewer may not see is a 404,
one they may only read a 403.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import RedirectResponse

from ...hub.card import ModelCard
from .. import auth, storage
from ..api import lfsrefs
from ..api.bodies import MAX_BODY
from ..api.commits import MAX_REGULAR_FILE, commit_files, gitattributes_at, upload_mode
from ..api.common import ApiError, NoSuchRoute, load_repo, raw_ref, raw_tail
from ..api.repos import (
    create_repository,
    delete_repository,
    move_repository,
    require_admin,
    set_visibility,
    store,
)
from ..storage.hooks.card_metadata import CARD_PATH, card_error
from . import render
from .render import RESERVED, Viewer, WebRoute, page, repo_path, rev_url
from .sessions import require_session, sign_in_first, viewing

router = APIRouter(route_class=WebRoute, include_in_schema=False)
LICENSES = ["apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc0-1.0", "gpl-3.0", "openrail", "other"]
CHUNK = 1 << 20
STALE = ("{branch!r} has moved since this page was loaded (someone committed in between): reload the "
         "page, check the latest files, and make your change again")


def can_write(viewer: Viewer | None, repo) -> bool:
    """Whether the page shows the publishing links (the forms check again on submit)."""
    return bool(viewer and viewer.web_session is not None and auth.is_member(viewer.principal, repo.namespace))


def can_administer(viewer: Viewer | None, repo) -> bool:
    """Whether the page shows the Settings link: the repo's owner or an admin of its organisation."""
    return bool(can_write(viewer, repo) and auth.can_administer(viewer.principal, repo.namespace))


render._env.globals["can_write"] = can_write  # the repository pages show New/Upload/Edit/Delete
render._env.globals["can_administer"] = can_administer  # ... and Settings


def _writable(session, viewer: Viewer, repo_type: str, owner: str, name: str):
    """The repository if the viewer may change it: 404 if they may not see it, 401/403 otherwise."""
    if repo_type == "model" and owner in RESERVED:
        raise NoSuchRoute()
    load_repo(session, viewer.principal, repo_type, f"{owner}/{name}")  # 404 first
    if viewer.web_session is None:
        raise ApiError(401, "sign in first: publishing from the browser needs a signed-in session")
    return load_repo(session, viewer.principal, repo_type, f"{owner}/{name}", write=True)


def _owners(session, viewer: Viewer) -> list[str]:
    """The namespaces the viewer may publish to: themselves and the organisations they write to."""
    orgs = viewer.principal.orgs  # org name -> role, read with the viewer
    return [viewer.name, *sorted(name for name, role in orgs.items() if role in ("write", "admin"))]


def _commit(request: Request, session, viewer: Viewer, repo, branch: str, ops: list, *, summary: str,
            description: str, parent: str) -> dict:
    """One commit through the API's commit code; a moved branch is refused with a clear page."""
    if not parent:
        raise ApiError(400, "this form has no parent commit: reload the page and submit it again")
    try:
        return commit_files(request, session, viewer.principal, repo, branch, ops, summary=summary,
                            description=description, parent=parent)
    except (storage.StaleParentError, storage.ConcurrentUpdateError) as err:
        raise ApiError(409, STALE.format(branch=branch)) from err


def _branch_head(request: Request, repo, rev: str) -> str:
    branches, _ = store(request).refs(repo.type, repo.repo_id)
    for b in branches:
        if b.name == rev:
            return b.target_commit
    raise ApiError(404, f"no branch {rev!r} in {repo.repo_id}: files can be changed on a branch only")


# -- /new ------------------------------------------------------------------------------------------


@router.get("/new")
def new_page(request: Request) -> Response:
    with viewing(request) as (session, viewer):
        if viewer.web_session is None:
            return sign_in_first(request, viewer)
        return page(request, "new.html", owners=_owners(session, viewer), licenses=LICENSES, form={})


@router.post("/new")
def new_repo(request: Request, owner: str = Form(""), name: str = Form(""), type: str = Form("model"),  # noqa: A002
             license: str = Form(""), private: str = Form(""), csrf: str = Form("")) -> Response:  # noqa: A002
    with viewing(request) as (session, viewer):
        require_session(viewer, csrf)
        form = {"owner": owner, "name": name, "type": type, "license": license, "private": bool(private)}
        if type not in ("model", "dataset"):
            raise ApiError(400, f"unknown repository type {type!r}: choose model or dataset")
        if license and license not in LICENSES:
            raise ApiError(400, f"unknown license {license!r}: choose one from the list, or none")
        try:
            repo = create_repository(request, session, viewer.principal, type, f"{owner}/{name.strip()}",
                                     bool(private))
        except ApiError as err:
            if err.status not in (400, 409):
                raise
            return page(request, "new.html", status_code=err.status, owners=_owners(session, viewer),
                        licenses=LICENSES, form=form, error=err.message)
        if license:
            card = str(ModelCard.from_template({"license": license}, model_id=repo.repo_id))
            _commit(request, session, viewer, repo, "main", [storage.AddFile(path=CARD_PATH, content=card.encode())],
                    summary="Add a model card" if type == "model" else "Add a dataset card", description="",
                    parent=store(request).resolve(repo.type, repo.repo_id, "main"))
        return RedirectResponse(repo_path(repo), status_code=303)


# -- upload ----------------------------------------------------------------------------------------


def upload_page(request: Request, repo_type: str, owner: str, name: str, rest: str) -> Response:
    with viewing(request) as (session, viewer):
        if viewer.web_session is None:
            load_repo(session, viewer.principal, repo_type, f"{owner}/{name}")  # 404 first
            return sign_in_first(request, viewer)
        repo = _writable(session, viewer, repo_type, owner, name)
        rev = raw_ref(request, repo.repo_id, "upload")
        return page(request, "upload.html", repo=repo, base=repo_path(repo), tab="files", rev=rev,
                    parent=_branch_head(request, repo, rev), limit=MAX_BODY)


def _file_op(request: Request, session, repo, attrs: str, upload: UploadFile):
    path = (upload.filename or "").replace("\\", "/").strip("/")
    if not path:
        raise ApiError(400, "a file without a name was sent: choose the files again")
    f = upload.file
    f.seek(0, 2)
    size = f.tell()
    f.seek(0)
    sample = f.read(512)
    f.seek(0)
    if upload_mode(attrs, path, size, sample) == "regular":
        data = f.read(MAX_REGULAR_FILE + 1)
        return storage.AddFile(path=path, content=data)
    hasher = hashlib.sha256()
    for block in iter(lambda: f.read(CHUNK), b""):
        hasher.update(block)
    oid = hasher.hexdigest()
    f.seek(0)
    lfs = request.app.state.lfs
    lfs.put(oid, size, iter(lambda: f.read(CHUNK), b""))  # hashed again while written; kept only if it verifies
    lfsrefs.grant(session, repo.id, [oid])
    return storage.AddLfsFile(path=path, oid=oid, size=size)


def upload_files(request: Request, repo_type: str, owner: str, name: str, rest: str, files: list[UploadFile],
                 message: str, description: str, parent: str, csrf: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = _writable(session, viewer, repo_type, owner, name)
        require_session(viewer, csrf)
        rev = raw_ref(request, repo.repo_id, "upload")
        files = [f for f in files if f.filename]
        if not files:
            raise ApiError(400, "choose at least one file to upload")
        attrs = gitattributes_at(store(request), repo, parent if parent else None)
        ops = [_file_op(request, session, repo, attrs, f) for f in files]
        default = f"Upload {ops[0].path}" if len(ops) == 1 else f"Upload {len(ops)} files"
        _commit(request, session, viewer, repo, rev, ops, summary=message.strip() or default,
                description=description, parent=parent)
        return RedirectResponse(rev_url(repo_path(repo), "tree", rev), status_code=303)


# -- edit and delete a file ------------------------------------------------------------------------


def _card_template(repo) -> str:
    return str(ModelCard.from_template(model_id=repo.repo_id))


def edit_page(request: Request, repo_type: str, owner: str, name: str, rest: str) -> Response:
    with viewing(request) as (session, viewer):
        if viewer.web_session is None:
            load_repo(session, viewer.principal, repo_type, f"{owner}/{name}")
            return sign_in_first(request, viewer)
        repo = _writable(session, viewer, repo_type, owner, name)
        rev, path = raw_tail(request, repo.repo_id, "edit")
        path = path.strip("/")
        parent = _branch_head(request, repo, rev)
        content, exists = "", False
        if path:
            try:
                entry = store(request).entry(repo.type, repo.repo_id, parent, path)
            except storage.EntryNotFound:
                entry = None
            if entry is not None:
                if entry.type != "file" or entry.lfs is not None or entry.size > MAX_REGULAR_FILE:
                    raise ApiError(400, f"{path!r} is not a text file this page can edit: upload a new version instead")
                data = store(request).read_blob(repo.type, repo.repo_id, parent, path)
                try:
                    content, exists = data.decode("utf-8"), True
                except UnicodeDecodeError:
                    raise ApiError(400, f"{path!r} is not UTF-8 text: upload a new version instead") from None
        template = _card_template(repo) if path == CARD_PATH and not exists else ""
        return _edit_form(request, repo, rev, path, content, parent, exists=exists, card_template=template)


def _edit_form(request: Request, repo, rev: str, path: str, content: str, parent: str, *, exists: bool,
               status_code: int = 200, **context) -> Response:
    return page(request, "edit.html", status_code=status_code, repo=repo, base=repo_path(repo), tab="files",
                rev=rev, path=path, content=content, parent=parent, exists=exists, **context)


def edit_file(request: Request, repo_type: str, owner: str, name: str, rest: str, path: str, content: str,
              message: str, description: str, parent: str, csrf: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = _writable(session, viewer, repo_type, owner, name)
        require_session(viewer, csrf)
        rev, url_path = raw_tail(request, repo.repo_id, "edit")
        path = (path or url_path).strip().strip("/")
        exists = bool(url_path.strip("/"))
        data = content.replace("\r\n", "\n").encode()
        if not path:
            return _edit_form(request, repo, rev, path, content, parent, exists=exists, status_code=400,
                              error="give the file a name")
        if path == CARD_PATH:
            error = card_error(data)
            if error:  # shown before anything is committed
                return _edit_form(request, repo, rev, path, content, parent, exists=exists, status_code=400,
                                  yaml_error=error)
        verb = "Update" if exists else "Create"
        _commit(request, session, viewer, repo, rev, [storage.AddFile(path=path, content=data)],
                summary=message.strip() or f"{verb} {path}", description=description, parent=parent)
        return RedirectResponse(rev_url(repo_path(repo), "blob", rev, path), status_code=303)


def delete_file(request: Request, repo_type: str, owner: str, name: str, rest: str, message: str, parent: str,
                csrf: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = _writable(session, viewer, repo_type, owner, name)
        require_session(viewer, csrf)
        rev, path = raw_tail(request, repo.repo_id, "delete")
        path = path.strip("/")
        _commit(request, session, viewer, repo, rev, [storage.DeleteFile(path=path)],
                summary=message.strip() or f"Delete {path}", description="", parent=parent)
        return RedirectResponse(rev_url(repo_path(repo), "tree", rev), status_code=303)


# -- settings --------------------------------------------------------------------------------------


def settings_page(request: Request, repo_type: str, owner: str, name: str) -> Response:
    with viewing(request) as (session, viewer):
        if viewer.web_session is None:
            load_repo(session, viewer.principal, repo_type, f"{owner}/{name}")
            return sign_in_first(request, viewer)
        repo = _writable(session, viewer, repo_type, owner, name)
        require_admin(viewer.principal, repo, "manage the settings of")
        return _settings_form(request, session, viewer, repo)


def _settings_form(request: Request, session, viewer: Viewer, repo, status_code: int = 200, **context) -> Response:
    return page(request, "settings.html", status_code=status_code, repo=repo, base=repo_path(repo),
                tab="settings", owners=_owners(session, viewer), **context)


def change_settings(request: Request, repo_type: str, owner: str, name: str, action: str, visibility: str,
                    new_owner: str, new_name: str, confirm: str, csrf: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = _writable(session, viewer, repo_type, owner, name)
        require_session(viewer, csrf)
        if action == "visibility":
            if visibility not in ("public", "private"):
                raise ApiError(400, "choose the visibility: public or private")
            set_visibility(viewer.principal, repo, visibility == "private")
            return _settings_form(request, session, viewer, repo, done=f"{repo.repo_id} is now {visibility}.")
        if action == "move":
            dst = f"{new_owner.strip()}/{new_name.strip()}"
            if dst == repo.repo_id:
                return _settings_form(request, session, viewer, repo, 400, move_error="that is its name already")
            try:
                move_repository(request, session, viewer.principal, repo, dst)
            except ApiError as err:
                if err.status not in (400, 403, 409):
                    raise
                return _settings_form(request, session, viewer, repo, err.status, move_error=err.message)
            return RedirectResponse(f"{repo_path(repo)}/settings", status_code=303)
        if action == "delete":
            if confirm.strip() != repo.repo_id:
                return _settings_form(request, session, viewer, repo, 400,
                                      delete_error=f"type {repo.repo_id} exactly to confirm the deletion")
            home = f"/{viewer.name}"
            delete_repository(request, session, viewer.principal, repo)
            return RedirectResponse(home, status_code=303)
        raise ApiError(400, f"unknown settings action {action!r}: use visibility, move or delete")


# -- routes (datasets first, so /datasets/... never reads as a model's owner) ------------------------


def _routes(repo_type: str) -> list[tuple[str, str, Callable]]:
    def get_upload(request: Request, owner: str, name: str, rest: str) -> Response:
        return upload_page(request, repo_type, owner, name, rest)

    def post_upload(request: Request, owner: str, name: str, rest: str, files: list[UploadFile] = File(default=[]),
                    message: str = Form(""), description: str = Form(""), parent: str = Form(""),
                    csrf: str = Form("")) -> Response:
        return upload_files(request, repo_type, owner, name, rest, files, message, description, parent, csrf)

    def get_edit(request: Request, owner: str, name: str, rest: str) -> Response:
        return edit_page(request, repo_type, owner, name, rest)

    def post_edit(request: Request, owner: str, name: str, rest: str, path: str = Form(""), content: str = Form(""),
                  message: str = Form(""), description: str = Form(""), parent: str = Form(""),
                  csrf: str = Form("")) -> Response:
        return edit_file(request, repo_type, owner, name, rest, path, content, message, description, parent, csrf)

    def post_delete(request: Request, owner: str, name: str, rest: str, message: str = Form(""),
                    parent: str = Form(""), csrf: str = Form("")) -> Response:
        return delete_file(request, repo_type, owner, name, rest, message, parent, csrf)

    def get_settings(request: Request, owner: str, name: str) -> Response:
        return settings_page(request, repo_type, owner, name)

    def post_settings(request: Request, owner: str, name: str, action: str = Form(""), visibility: str = Form(""),
                      new_owner: str = Form(""), new_name: str = Form(""), confirm: str = Form(""),
                      csrf: str = Form("")) -> Response:
        return change_settings(request, repo_type, owner, name, action, visibility, new_owner, new_name, confirm, csrf)

    return [
        ("/upload/{rest:path}", "GET", get_upload), ("/upload/{rest:path}", "POST", post_upload),
        ("/edit/{rest:path}", "GET", get_edit), ("/edit/{rest:path}", "POST", post_edit),
        ("/delete/{rest:path}", "POST", post_delete),
        ("/settings", "GET", get_settings), ("/settings", "POST", post_settings),
    ]


for _prefix, _type in (("/datasets", "dataset"), ("", "model")):
    for _suffix, _method, _view in _routes(_type):
        router.add_api_route(f"{_prefix}/{{owner}}/{{name}}{_suffix}", _view, methods=[_method],
                             name=f"{_type}_{_method.lower()}_{_view.__name__}")
