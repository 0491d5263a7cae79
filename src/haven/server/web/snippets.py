"""'Use this model' snippets: Haven and transformers (pipeline for the repo's task and its Auto
class), git clone with LFS, and the haven and hf download commands, all pointed at this hub."""

from __future__ import annotations

from dataclasses import dataclass

import haven
from haven.pipelines import supported_tasks

from ..db import Repo


@dataclass
class Snippet:
    title: str
    language: str  # "python" | "shell"
    code: str


def _env(url: str) -> str:
    return f"export HAVEN_ENDPOINT={url} HF_ENDPOINT={url}"


def _python(library: str, repo: Repo, auto: str | None) -> str | None:
    """A pipeline for the repo's task and its Auto class, in `library`, where that library has them."""
    lines = []
    task = repo.pipeline_tag
    if library == "haven" and auto and auto not in haven._EXPORTS:
        auto = None
    if task and (library == "transformers" or task in supported_tasks()):
        lines += [f"from {library} import pipeline", "", f'pipe = pipeline("{task}", model="{repo.repo_id}")']
    if auto:
        if lines:
            lines.append("")
        lines += [
            f"from {library} import AutoTokenizer, {auto}",
            "",
            f'tokenizer = AutoTokenizer.from_pretrained("{repo.repo_id}")',
            f'model = {auto}.from_pretrained("{repo.repo_id}")',
        ]
    return "\n".join(lines) if lines else None


def snippets(repo: Repo, url: str, auto: str | None) -> list[Snippet]:
    """The snippets for `repo` on the hub at `url`; `auto` is its head's Auto class, if known."""
    out = []
    if repo.type == "model":
        for library, title in (("haven", "Haven"), ("transformers", "transformers")):
            code = _python(library, repo, auto)
            if code:
                env = _env(url) if library == "haven" else f"export HF_ENDPOINT={url}"
                out.append(Snippet(title, "python", f"# {env}\n{code}"))
    prefix = "datasets/" if repo.type == "dataset" else ""
    out.append(Snippet("git clone (with LFS)", "shell", f"git lfs install\ngit clone {url}/{prefix}{repo.repo_id}"))
    kind = " --type dataset" if repo.type == "dataset" else ""
    out.append(Snippet("haven download", "shell", f"{_env(url)}\nhaven download {repo.repo_id}{kind}"))
    hf_kind = " --repo-type dataset" if repo.type == "dataset" else ""
    out.append(Snippet(
        "hf download", "shell",
        f"export HF_ENDPOINT={url}\nhf download {repo.repo_id}{hf_kind}",
    ))
    return out
