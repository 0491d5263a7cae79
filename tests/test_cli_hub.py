"""The hub commands of `haven`, run as subprocesses against a real hub server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import httpx
import pytest

from fixtures.server import unique_name


class Cli:
    """Runs `haven ARGS`: in this process through `haven.cli.main` (fast: no interpreter start-up, no
    imports), or with `proc=True` as a real subprocess. Every command runs as a subprocess at least
    once below (exit code, stdout/stderr contract); the other calls exercise the same code in-process
    with the same environment."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd = env, cwd

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None, proc: bool = False):
        run = self._subprocess if proc else self._in_process
        result = run(list(args), stdin)
        if ok:
            assert result.returncode == 0, f"haven {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def _subprocess(self, args: list[str], stdin: str | None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "haven.cli", *args], capture_output=True, text=True,
                              env=self.env, cwd=self.cwd, input=stdin, timeout=120)

    def _in_process(self, args: list[str], stdin: str | None) -> subprocess.CompletedProcess:
        from haven.cli import main

        out, err, saved_env, saved_cwd = io.StringIO(), io.StringIO(), dict(os.environ), os.getcwd()
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    mock.patch.object(sys, "stdin", io.StringIO(stdin or "")):
                try:
                    code = main(args)
                except SystemExit as exit_:  # argparse: --help, usage errors
                    code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def json(self, *args: str, proc: bool = False) -> object:
        return json.loads(self(*args, "--json", proc=proc).stdout)


def _fails_with_one_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def cli(hub_server, tmp_path):
    """`haven` against the session's hub, with a HOME, git config and caches of its own. The git config has
    NO credential helper: `haven login` alone must make git work."""
    user = unique_name("cli")
    token = hub_server.create_user(user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAVEN_", "HF_", "GIT_", "XDG_"))}
    git_config = tmp_path / "gitconfig"
    git_config.write_text("[user]\n\tname = t\n\temail = t@example.com\n")
    env.update(HAVEN_ENDPOINT=hub_server.url, HAVEN_HOME=str(tmp_path / "home"), HAVEN_DISABLE_PROGRESS_BARS="1",
               HOME=str(tmp_path / "user-home"), HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1",
               GIT_CONFIG_GLOBAL=str(git_config), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    runner = Cli(env, tmp_path)
    runner.user, runner.token, runner.url = user, token, hub_server.url
    runner.git_config = git_config
    return runner


def git(cli, *args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], env=cli.env, cwd=cwd or cli.cwd, capture_output=True, text=True,
                          input=stdin, timeout=120)


def test_every_command_has_help(cli):
    for args in (["login"], ["logout"], ["whoami"], ["repo", "create"], ["repo", "delete"], ["repo", "ls"],
                 ["upload"], ["download"], ["auth", "git-credential"]):
        out = cli(*args, "--help").stdout
        assert out.startswith("usage: haven " + " ".join(args))
    assert cli("download", "--help", proc=True).stdout.startswith("usage: haven download")


def test_login_whoami_git_credential_and_logout(cli, tmp_path):
    _fails_with_one_line(cli("whoami", ok=False, proc=True), "haven login")
    _fails_with_one_line(cli("login", "--token", "hv_wrong", ok=False), "token")
    assert f"as {cli.user}" in cli("login", "--no-git-credential", stdin=cli.token + "\n", proc=True).stdout  # token on stdin
    assert "credential" not in cli.git_config.read_text()  # --no-git-credential: git config untouched
    out = cli("login", "--token", cli.token, proc=True).stdout
    assert f"as {cli.user}" in out and "git credential helper registered" in out
    assert (tmp_path / "home" / "token").read_text().strip() == cli.token
    assert cli.token not in cli.git_config.read_text()  # git config names the helper, never the token
    assert cli("whoami", proc=True).stdout.startswith(cli.user)
    assert cli.json("whoami")["name"] == cli.user

    # git authenticates through Haven's helper (no other helper exists): clone a private repo, push to it
    repo = f"{cli.user}/{unique_name('git')}"
    cli("repo", "create", repo, "--private")
    (tmp_path / "f.txt").write_text("from git\n")
    cli("upload", repo, str(tmp_path / "f.txt"))
    clone = git(cli, "clone", "-q", f"{cli.url}/{repo}", str(tmp_path / "clone"))
    assert clone.returncode == 0, clone.stderr
    assert (tmp_path / "clone" / "f.txt").read_text() == "from git\n"
    (tmp_path / "clone" / "g.txt").write_text("pushed\n")
    git(cli, "add", "g.txt", cwd=tmp_path / "clone")
    git(cli, "commit", "-q", "-m", "push from git", cwd=tmp_path / "clone")
    push = git(cli, "push", "-q", "origin", "HEAD:main", cwd=tmp_path / "clone")
    assert push.returncode == 0, push.stderr
    from haven.hub.client import HubClient

    with HubClient(cli.url, cli.token) as client:
        assert "g.txt" in client.list_repo_files(repo)

    # what git itself hands out: the token for the hub, nothing for another host
    hub = urlsplit(cli.url)
    got = git(cli, "credential", "fill", stdin=f"protocol={hub.scheme}\nhost={hub.netloc}\n\n")
    assert got.returncode == 0 and f"password={cli.token}" in got.stdout.splitlines(), got.stderr
    other = git(cli, "credential", "fill", stdin="protocol=https\nhost=elsewhere.example\n\n")
    assert cli.token not in other.stdout and other.returncode != 0  # no helper answers; prompting is off
    other_port = git(cli, "credential", "fill", stdin=f"protocol={hub.scheme}\nhost={hub.hostname}:1\n\n")
    assert cli.token not in other_port.stdout

    assert "removed" in cli("logout", proc=True).stdout
    assert not (tmp_path / "home" / "token").exists()
    assert "haven" not in cli.git_config.read_text()
    denied = git(cli, "clone", "-q", f"{cli.url}/{repo}", str(tmp_path / "clone-after-logout"))
    assert denied.returncode != 0
    _fails_with_one_line(cli("whoami", ok=False), "haven login")


def test_git_credential_helper_protocol(cli, tmp_path):
    """`haven auth git-credential` run as git runs it: key=value lines in, answer out."""
    hub = urlsplit(cli.url)
    cli("login", "--token", cli.token, "--no-git-credential")

    def helper(action: str, request: str, *extra: str) -> str:
        return cli("auth", "git-credential", *extra, action, stdin=request, proc=True).stdout

    ask = f"protocol={hub.scheme}\nhost={hub.netloc}\npath={cli.user}/x.git\n\n"
    assert helper("get", ask).splitlines() == ["username=haven", f"password={cli.token}"]
    assert helper("get", ask, "--username", "me").splitlines() == ["username=me", f"password={cli.token}"]
    assert helper("get", f"protocol=https\nhost={hub.netloc}\n\n") == ""  # another protocol
    assert helper("get", "protocol=http\nhost=other.example\n\n") == ""  # another host
    assert helper("get", ask, "--endpoint", "http://other.example") == ""  # registered for another hub
    assert helper("frobnicate", ask) == ""  # unknown actions are ignored, as the protocol asks

    helper("erase", f"protocol={hub.scheme}\nhost=other.example\npassword={cli.token}\n\n")
    assert (tmp_path / "home" / "token").exists()  # not ours to erase
    helper("erase", f"protocol={hub.scheme}\nhost={hub.netloc}\npassword=hv_something_else\n\n")
    assert (tmp_path / "home" / "token").exists()  # another credential was rejected, not Haven's token
    helper("erase", f"protocol={hub.scheme}\nhost={hub.netloc}\nusername=x\npassword={cli.token}\n\n")
    assert not (tmp_path / "home" / "token").exists()  # git rejected Haven's token: forgotten
    assert helper("get", ask) == ""
    helper("store", f"protocol={hub.scheme}\nhost={hub.netloc}\nusername=x\npassword={cli.token}\n\n")
    assert (tmp_path / "home" / "token").read_text().strip() == cli.token  # a working token typed into git
    assert cli("whoami").stdout.startswith(cli.user)


def test_repo_create_ls_delete(cli):
    cli("login", "--token", cli.token, "--no-git-credential")
    name = unique_name("cli-repo")
    made = cli.json("repo", "create", name, "--private", proc=True)
    assert made == {"url": f"{cli.url}/{cli.user}/{name}", "repo_id": f"{cli.user}/{name}", "type": "model",
                    "private": True}
    _fails_with_one_line(cli("repo", "create", name, ok=False), "conflict")
    cli("repo", "create", name, "--exist-ok")
    data = cli("repo", "create", f"{cli.user}/{name}-data", "--type", "dataset").stdout
    assert f"{cli.url}/datasets/{cli.user}/{name}-data" in data
    listed = cli.json("repo", "ls", "--author", cli.user, proc=True)
    assert [r["id"] for r in listed] == [f"{cli.user}/{name}"] and listed[0]["private"] is True
    assert [r["id"] for r in cli.json("repo", "ls", "--search", name)] == [f"{cli.user}/{name}"]
    assert cli.json("repo", "ls", "--author", cli.user, "--filter", "no-such-tag") == []
    assert f"{cli.user}/{name}" in cli("repo", "ls", "--author", cli.user).stdout
    cli("repo", "delete", f"{cli.user}/{name}", proc=True)
    _fails_with_one_line(cli("repo", "delete", f"{cli.user}/{name}", ok=False), "not found")
    cli("repo", "delete", f"{cli.user}/{name}", "--missing-ok")
    _fails_with_one_line(cli("repo", "create", "a/b/c", ok=False), "owner/name")


def test_upload_and_download(cli, tmp_path):
    cli("login", "--token", cli.token, "--no-git-credential")
    repo = f"{cli.user}/{unique_name('updown')}"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub" / "w.bin").write_bytes(os.urandom(300_000))
    (src / "notes.log").write_text("skip me")
    result = cli.json("upload", repo, str(src), "--exclude", "*.log", "-m", "first upload", proc=True)
    assert len(result["commit"]) == 40 and result["skipped"] is False
    branch = cli.json("upload", repo, str(src / "config.json"), "only-on-dev.json", "--revision", "dev")
    assert len(branch["commit"]) == 40
    single = cli.json("upload", repo, str(src / "config.json"), "copy/config.json")
    again = cli.json("upload", repo, str(src / "config.json"), "copy/config.json")
    assert again["skipped"] and again["commit"] == single["commit"]

    out = tmp_path / "out"
    cli("download", repo, "--local-dir", str(out), proc=True)
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts)
    assert got == [".gitattributes", "config.json", "copy/config.json", "sub/w.bin"]
    assert (out / "sub" / "w.bin").read_bytes() == (src / "sub" / "w.bin").read_bytes()

    paths = cli.json("download", repo, "config.json", "--revision", result["commit"])["paths"]
    assert Path(paths[0]).read_text() == '{"a": 1}' and f"snapshots/{result['commit']}" in paths[0]
    only = cli("download", repo, "--include", "*.json", "--local-dir", str(tmp_path / "json")).stdout.strip()
    got = sorted(p.relative_to(only).as_posix() for p in Path(only).rglob("*") if p.is_file() and ".cache" not in p.parts)
    assert got == ["config.json", "copy/config.json"]
    _fails_with_one_line(cli("download", repo, "missing.txt", ok=False), "missing.txt")
    _fails_with_one_line(cli("download", repo, "config.json", "--revision", "nope", ok=False), "nope")
    _fails_with_one_line(cli("download", f"{cli.user}/nothing-here", ok=False), "not found")
    _fails_with_one_line(cli("upload", repo, str(tmp_path / "absent"), ok=False), "does not exist")

    offline = Cli({**cli.env, "HAVEN_OFFLINE": "1", "HAVEN_ENDPOINT": "http://127.0.0.1:9"}, tmp_path)
    assert Path(offline("download", repo, "config.json", proc=True).stdout.strip()).read_text() == '{"a": 1}'
    _fails_with_one_line(offline("download", repo, "nope.bin", ok=False), "HAVEN_OFFLINE")


# Runs `haven ARGS` with the server's packages unimportable, as on an install without the extra.
_WITHOUT_SERVER = """
import importlib.abc, sys
BLOCKED = {"fastapi", "sqlalchemy", "pygit2", "uvicorn"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from haven.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args", [
    ["serve", "--port", "1"],
    ["admin", "create-user", "someone"],
    ["admin", "create-token", "someone"],
    ["admin", "create-org", "someorg"],
])
def test_server_commands_without_the_server_extra_name_it(tmp_path, args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_SERVER, *args, "--data", str(tmp_path / "data")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"haven {args[0]}: ") and "pip install 'haven[server]'" in line
    assert not (tmp_path / "data").exists()  # nothing was created on the way to the error


def _advises_a_command(line: str) -> None:
    """A command-line error names commands, options or variables, never Python calls or keyword arguments."""
    for python in ("HubClient", "()", "token=", "repo_type=", "local_files_only"):
        assert python not in line, line


def test_cli_errors_advise_commands_not_python(cli, tmp_path):
    # not logged in
    for args in (["whoami"], ["repo", "create", "x"], ["upload", "x", str(tmp_path)]):
        proc = cli(*args, ok=False, proc=args == ["whoami"])
        _fails_with_one_line(proc, "haven login")
        _advises_a_command(proc.stderr)
    # a bad token, at login and in the environment
    proc = cli("login", "--token", "hv_wrong", ok=False, proc=True)
    _fails_with_one_line(proc, "rejected this token", "haven login --token")
    _advises_a_command(proc.stderr)
    wrong = Cli({**cli.env, "HAVEN_TOKEN": "hv_wrong"}, tmp_path)
    proc = wrong("repo", "ls", ok=False)
    _fails_with_one_line(proc, "haven login", "HAVEN_TOKEN")
    _advises_a_command(proc.stderr)

    cli("login", "--token", cli.token, "--no-git-credential")
    # a repository that does not exist (or is private to someone else)
    proc = cli("download", f"{cli.user}/nothing-here", "config.json", ok=False, proc=True)
    _fails_with_one_line(proc, "not found", "haven login")
    _advises_a_command(proc.stderr)
    # a revision or a file that does not exist: where to look, as a command or a page
    repo = f"{cli.user}/{unique_name('errs')}"
    (tmp_path / "a.txt").write_text("a")
    cli("upload", repo, str(tmp_path / "a.txt"))
    proc = cli("download", repo, "a.txt", "--revision", "nope", ok=False)
    _fails_with_one_line(proc, "'nope'", f"git ls-remote {cli.url}/{repo}")
    _advises_a_command(proc.stderr)
    proc = cli("download", repo, "b.txt", ok=False)
    listing = f"{cli.url}/api/models/{repo}/tree/main?recursive=true"
    _fails_with_one_line(proc, "'b.txt'", listing)
    _advises_a_command(proc.stderr)
    # ... and what they point at does list the refs and the files
    assert [f["path"] for f in httpx.get(listing).json() if f["type"] == "file"] == [".gitattributes", "a.txt"]
    listed = subprocess.run(["git", "ls-remote", f"{cli.url}/{repo}"], env=cli.env, capture_output=True, text=True,
                            timeout=60)
    assert "refs/heads/main" in listed.stdout, listed.stderr
