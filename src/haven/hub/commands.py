"""`haven login | logout | auth git-credential | whoami | repo create|delete|ls | upload | download`.

Each command prints what it did, exits non-zero with a one-line reason on failure (HavenError
is turned into that line by `haven.cli`), and prints JSON with `--json` where output is data.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    login = sub.add_parser("login", help="store a token for the hub (and make git use it)",
                           description="Check a token against the hub, store it for later sessions, and register "
                           "Haven as git's credential helper for the hub's URL (global git config) so `git "
                           "clone/push` of hub repos just work, with no other credential helper needed.")
    login.add_argument("--token", help="the access token (asked for when omitted; also read from stdin)")
    login.add_argument("--no-git-credential", action="store_true", help="do not register the git credential helper")
    login.set_defaults(func=cmd_login)

    logout = sub.add_parser("logout", help="forget the stored token (and the git credential helper)")
    logout.set_defaults(func=cmd_logout)

    auth = sub.add_parser("auth", help="credential plumbing for other tools (git)")
    auth_sub = auth.add_subparsers(dest="auth_command", metavar="ACTION")
    helper = auth_sub.add_parser(
        "git-credential", help="git's credential helper for the hub (registered by `haven login`)",
        description="Speaks git's credential helper protocol: reads key=value lines on stdin; for `get` about the "
        "hub's URL prints username= and password= (the token); other hosts get nothing. `haven login` registers "
        "it for the hub's URL only; `haven logout` removes it.")
    helper.add_argument("action", help="get, store or erase (others are ignored, as git's protocol asks)")
    helper.add_argument("--endpoint", help="the hub URL this helper answers for (default: HAVEN_ENDPOINT)")
    helper.add_argument("--username", default="haven", help="user name to give git (the hub only checks the token)")
    helper.set_defaults(func=cmd_git_credential)
    auth.set_defaults(func=lambda args: auth.print_help() or 2)

    whoami = sub.add_parser("whoami", help="show the account behind the token in use")
    whoami.add_argument("--json", action="store_true", help="print the hub's answer as JSON")
    whoami.set_defaults(func=cmd_whoami)

    repo = sub.add_parser("repo", help="create, delete or list repositories")
    repo_sub = repo.add_subparsers(dest="repo_command", metavar="ACTION")
    create = repo_sub.add_parser("create", help="create a repository")
    create.add_argument("name", help="owner/name, or a bare name in your own namespace")
    create.add_argument("--private", action="store_true", help="only you (and your organization) can see it")
    create.add_argument("--type", dest="repo_type", choices=["model", "dataset"], default="model")
    create.add_argument("--exist-ok", action="store_true", help="succeed if it already exists")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_repo_create)
    delete = repo_sub.add_parser("delete", help="delete a repository and all its files")
    delete.add_argument("name", help="owner/name")
    delete.add_argument("--type", dest="repo_type", choices=["model", "dataset"], default="model")
    delete.add_argument("--missing-ok", action="store_true", help="succeed if it does not exist")
    delete.set_defaults(func=cmd_repo_delete)
    ls = repo_sub.add_parser("ls", help="list or search repositories")
    ls.add_argument("--author", help="only repositories of this user or organization")
    ls.add_argument("--search", help="text the repository id contains")
    ls.add_argument("--filter", action="append", help="a tag the repository has (repeatable)")
    ls.add_argument("--sort", choices=["downloads", "likes", "lastModified", "createdAt"])
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--type", dest="repo_type", choices=["model", "dataset"], default="model")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_repo_ls)
    repo.set_defaults(func=lambda args: repo.print_help() or 2)

    upload = sub.add_parser("upload", help="upload a file or folder in one commit",
                            description="Upload PATH (a file or a folder) to REPO, under PATH_IN_REPO.")
    upload.add_argument("repo", help="owner/name (created if it does not exist)")
    upload.add_argument("path", help="local file or folder")
    upload.add_argument("path_in_repo", nargs="?", help="destination in the repo (default: the file's name, or the root)")
    upload.add_argument("--include", action="append", help="only files matching this glob (repeatable)")
    upload.add_argument("--exclude", action="append", help="skip files matching this glob (repeatable)")
    upload.add_argument("--delete", action="append", help="delete remote files matching this glob (folders only)")
    upload.add_argument("-m", "--commit-message", dest="message", help="the commit message")
    upload.add_argument("--revision", help="branch to commit to (default main; created if missing)")
    upload.add_argument("--private", action="store_true", help="create the repo as private if it is new")
    upload.add_argument("--type", dest="repo_type", choices=["model", "dataset"], default="model")
    upload.add_argument("--json", action="store_true")
    upload.set_defaults(func=cmd_upload)

    download = sub.add_parser("download", help="download files or a whole repository",
                              description="Download FILES (or the whole repository) into the cache or --local-dir; "
                              "prints the local path.")
    download.add_argument("repo", help="owner/name")
    download.add_argument("files", nargs="*", help="files to fetch (default: everything)")
    download.add_argument("--revision", help="branch, tag or commit (default main)")
    download.add_argument("--local-dir", help="copy the files into this folder")
    download.add_argument("--include", action="append", help="only files matching this glob (whole-repo downloads)")
    download.add_argument("--exclude", action="append", help="skip files matching this glob (whole-repo downloads)")
    download.add_argument("--force", action="store_true", help="download again even if cached")
    download.add_argument("--type", dest="repo_type", choices=["model", "dataset"], default="model")
    download.add_argument("--json", action="store_true")
    download.set_defaults(func=cmd_download)


def _one_line(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input (ValueError, OSError) becomes a HavenError, which `haven` prints as one line."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from ..errors import HavenError

        try:
            return func(args)
        except HavenError:
            raise
        except (ValueError, OSError) as err:
            raise HavenError(str(err).splitlines()[0] if str(err) else type(err).__name__) from err

    return wrapper


def _client(**kwargs: Any):
    from .client import HubClient

    return HubClient(**kwargs)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


@_one_line
def cmd_login(args: argparse.Namespace) -> int:
    from ..errors import HubAuthError
    from . import git_credential
    from .auth import get_endpoint, save_token

    token = args.token
    if not token:
        token = getpass.getpass("Token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        raise HubAuthError("no token given: pass --token, or paste one when asked")
    endpoint = get_endpoint()
    with _client(token=token) as client:
        try:
            me = client.whoami()
        except HubAuthError as err:
            if err.status != 401:
                raise
            raise HubAuthError(
                f"{endpoint} rejected this token: it is wrong, expired or revoked. Create a token on the hub and run "
                "`haven login --token <token>` again", status=401,
            ) from None
    path = save_token(token)
    role = (((me.get("auth") or {}).get("accessToken") or {}).get("role")) or "unknown"
    print(f"Logged in to {endpoint} as {me.get('name')} (token role: {role}); token saved to {path}")
    if not args.no_git_credential:
        if git_credential.register(endpoint, me.get("name") or "haven"):
            print(f"git credential helper registered for {endpoint} (global git config): git clone/push there "
                  "use this token")
        else:
            print("could not register a git credential helper (is git installed?); git will ask for a password: "
                  "give the token")
    return 0


@_one_line
def cmd_logout(args: argparse.Namespace) -> int:
    from . import git_credential
    from .auth import delete_token, get_endpoint

    endpoint = get_endpoint()
    had = delete_token()
    print("Logged out: stored token removed" if had else "No stored token (nothing to do)")
    if git_credential.unregister(endpoint):
        print(f"git credential helper for {endpoint} removed")
    git_credential.reject_elsewhere(endpoint)
    if os.environ.get("HAVEN_TOKEN") or os.environ.get("HF_TOKEN"):
        print("note: HAVEN_TOKEN/HF_TOKEN is still set in the environment and will keep being used")
    return 0


@_one_line
def cmd_git_credential(args: argparse.Namespace) -> int:
    """git's credential helper protocol (see `git_credential`); prints nothing for other hosts."""
    from . import git_credential
    from .auth import get_endpoint

    request = git_credential.parse_request(sys.stdin)
    sys.stdout.write(git_credential.answer(args.action, request, args.endpoint or get_endpoint(), args.username))
    return 0


@_one_line
def cmd_whoami(args: argparse.Namespace) -> int:
    with _client() as client:
        me = client.whoami()
        endpoint = client.endpoint
    if args.json:
        _print_json(me)
    else:
        orgs = ", ".join(o.get("name", "") for o in me.get("orgs") or [])
        print(f"{me.get('name')} at {endpoint}" + (f" (orgs: {orgs})" if orgs else ""))
    return 0


@_one_line
def cmd_repo_create(args: argparse.Namespace) -> int:
    with _client() as client:
        url = client.create_repo(args.name, private=args.private or None, repo_type=args.repo_type,
                                 exist_ok=args.exist_ok)
    if args.json:
        _print_json({"url": str(url), "repo_id": url.repo_id, "type": url.repo_type, "private": bool(args.private)})
    else:
        print(f"Created {url.repo_id}: {url}")
    return 0


@_one_line
def cmd_repo_delete(args: argparse.Namespace) -> int:
    with _client() as client:
        client.delete_repo(args.name, repo_type=args.repo_type, missing_ok=args.missing_ok)
    print(f"Deleted {args.name}")
    return 0


@_one_line
def cmd_repo_ls(args: argparse.Namespace) -> int:
    with _client() as client:
        repos = list(client.list_models(author=args.author, search=args.search, filter=args.filter, sort=args.sort,
                                        limit=args.limit, repo_type=args.repo_type))
    if args.json:
        _print_json([{"id": r.id, "private": r.private, "downloads": r.downloads, "likes": r.likes,
                      "tags": r.tags, "pipeline_tag": r.pipeline_tag, "lastModified": r.last_modified} for r in repos])
    elif not repos:
        print("no repositories found")
    else:
        for r in repos:
            print(f"{r.id}\t{'private' if r.private else 'public'}\t{r.downloads} downloads\t{r.pipeline_tag or ''}")
    return 0


@_one_line
def cmd_upload(args: argparse.Namespace) -> int:
    from ..errors import HavenError

    if not os.path.exists(args.path):
        raise HavenError(f"{args.path} does not exist; pass a file or folder to upload")
    with _client() as client:
        created = client.create_repo(args.repo, private=args.private or None, repo_type=args.repo_type, exist_ok=True)
        if args.revision and args.revision != "main":
            client.create_branch(created.repo_id, args.revision, repo_type=args.repo_type, exist_ok=True)
        common = {"repo_id": created.repo_id, "revision": args.revision, "repo_type": args.repo_type}
        if os.path.isdir(args.path):
            info = client.upload_folder(folder_path=args.path, path_in_repo=args.path_in_repo or "",
                                        allow_patterns=args.include, ignore_patterns=args.exclude,
                                        delete_patterns=args.delete, commit_message=args.message, **common)
        else:
            if args.include or args.exclude or args.delete:
                raise HavenError("--include/--exclude/--delete only apply when uploading a folder")
            info = client.upload_file(path_or_fileobj=args.path,
                                      path_in_repo=args.path_in_repo or os.path.basename(args.path),
                                      commit_message=args.message, **common)
    if args.json:
        _print_json({"repo_id": created.repo_id, "commit": info.oid, "url": info.commit_url, "skipped": info.skipped})
    elif info.skipped:
        print(f"Nothing changed in {created.repo_id} (head {info.oid}); no commit made")
    else:
        print(f"Committed {info.oid} to {created.repo_id}: {info.commit_url}")
    return 0


@_one_line
def cmd_download(args: argparse.Namespace) -> int:
    with _client() as client:
        kw = {"revision": args.revision, "repo_type": args.repo_type, "local_dir": args.local_dir,
              "force_download": args.force}
        if args.files:
            paths = [client.hf_hub_download(args.repo, f, **kw) for f in args.files]
        else:
            paths = [client.snapshot_download(args.repo, allow_patterns=args.include, ignore_patterns=args.exclude, **kw)]
    if args.json:
        _print_json({"repo_id": args.repo, "paths": paths})
    else:
        print("\n".join(paths))
    return 0
