"""The tokenizer class names checkpoints and scripts use (`BertTokenizer`, `GPT2TokenizerFast`,
`PreTrainedTokenizerFast` ...), as named entry points to the one `Tokenizer`.

Each is a thin subclass that says which reference class it stands for: that class decides the
defaults (special tokens, model inputs, padding side) whatever tokenizer_config.json names, and
which legacy files are read when there is no tokenizer.json (`vocab_files_names`, the
reference's attribute). `PreTrainedTokenizerFast` reads tokenizer.json only. As in transformers 5,
the `...Fast` names are the same classes.

    BertTokenizer.from_pretrained(dir)            # tokenizer.json, else vocab.txt
    BertTokenizer(vocab_file="vocab.txt", do_lower_case=False)
    GPT2Tokenizer(vocab_file="vocab.json", merges_file="merges.txt")
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from ..tokenizer import Tokenizer
from .loading import load_files, read_files


class NamedTokenizer(Tokenizer):
    """A `Tokenizer` loaded the way the reference class of the same name loads."""

    vocab_files_names: ClassVar[dict[str, str]] = {}
    json_only: ClassVar[bool] = False

    def __init__(
        self,
        backend: Any = None,
        *,
        vocab_file: str | os.PathLike | None = None,
        merges_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        """`Cls(vocab_file=..., merges_file=..., tokenizer_file=..., **options)` builds the
        tokenizer from those files; `Cls(backend, ...)` wraps a `tokenizers.Tokenizer` as
        `Tokenizer` does."""
        if backend is not None:
            super().__init__(backend, **kwargs)
            return
        names = {**self.vocab_files_names, "tokenizer_file": "tokenizer.json"}
        given = {"vocab_file": vocab_file, "merges_file": merges_file, "tokenizer_file": tokenizer_file}
        files: dict[str, str] = {}
        for arg, path in given.items():
            if path is None:
                continue
            if arg not in names:
                raise TypeError(
                    f"{type(self).__name__} takes no {arg}; its files are "
                    + ", ".join(f"{k}= ({v})" for k, v in names.items())
                )
            files[names[arg]] = os.fspath(path)
        if not files:
            raise TypeError(
                f"{type(self).__name__}() needs its files: "
                + ", ".join(f"{k}= ({v})" for k, v in names.items())
                + f"; or use {type(self).__name__}.from_pretrained(directory_or_id)"
            )
        loaded = read_files(files.get, kwargs, ", ".join(files.values()), **self._entry_point())
        self._init_loaded(loaded, "")

    @classmethod
    def _entry_point(cls) -> dict[str, Any]:
        return {"tokenizer_class": cls.__name__, "json_only": cls.json_only}


def _named(name: str, doc: str, **files: str) -> type[NamedTokenizer]:
    return type(name, (NamedTokenizer,), {"vocab_files_names": files, "__doc__": doc, "__module__": __name__})


class PreTrainedTokenizerFast(NamedTokenizer):
    """Any tokenizer saved as tokenizer.json (and nothing else), with generic defaults."""

    json_only = True


BertTokenizer = _named("BertTokenizer", "WordPiece: tokenizer.json, else vocab.txt.", vocab_file="vocab.txt")
DistilBertTokenizer = _named(
    "DistilBertTokenizer",
    "BERT's WordPiece without token_type_ids: tokenizer.json, else vocab.txt.",
    vocab_file="vocab.txt",
)
RobertaTokenizer = _named(
    "RobertaTokenizer",
    "Byte-level BPE: tokenizer.json, else vocab.json + merges.txt.",
    vocab_file="vocab.json",
    merges_file="merges.txt",
)
GPT2Tokenizer = _named(
    "GPT2Tokenizer",
    "Byte-level BPE: tokenizer.json, else vocab.json + merges.txt.",
    vocab_file="vocab.json",
    merges_file="merges.txt",
)
CamembertTokenizer = _named(
    "CamembertTokenizer",
    "Sentencepiece Unigram, fairseq ids: tokenizer.json, else sentencepiece.bpe.model.",
    vocab_file="sentencepiece.bpe.model",
)
XLMRobertaTokenizer = _named(
    "XLMRobertaTokenizer",
    "Sentencepiece Unigram, fairseq ids: tokenizer.json, else sentencepiece.bpe.model.",
    vocab_file="sentencepiece.bpe.model",
)
LlamaTokenizer = _named(
    "LlamaTokenizer",
    "Sentencepiece BPE with byte fallback: tokenizer.json, else tokenizer.model.",
    vocab_file="tokenizer.model",
)

# As in transformers 5, the "fast" names are the same classes.
BertTokenizerFast = BertTokenizer
DistilBertTokenizerFast = DistilBertTokenizer
RobertaTokenizerFast = RobertaTokenizer
GPT2TokenizerFast = GPT2Tokenizer
CamembertTokenizerFast = CamembertTokenizer
XLMRobertaTokenizerFast = XLMRobertaTokenizer
LlamaTokenizerFast = LlamaTokenizer

NAMED_TOKENIZERS = {
    cls.__name__: cls
    for cls in (
        PreTrainedTokenizerFast,
        BertTokenizer,
        DistilBertTokenizer,
        RobertaTokenizer,
        GPT2Tokenizer,
        CamembertTokenizer,
        XLMRobertaTokenizer,
        LlamaTokenizer,
    )
}


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(dir_or_id)` -> a `Tokenizer`, as the named entry point of the
    class the files name when Haven has one (`BertTokenizer` ...: still the one Tokenizer)."""

    def __init__(self) -> None:
        raise TypeError("use AutoTokenizer.from_pretrained(path_or_id)")

    @staticmethod
    def from_pretrained(
        path_or_id: str | os.PathLike, *, revision: str | None = None, **kwargs: Any
    ) -> Tokenizer:
        loaded = load_files(path_or_id, revision, kwargs)
        cls = NAMED_TOKENIZERS.get((loaded.tokenizer_class or "").removesuffix("Fast"), Tokenizer)
        tok = cls.__new__(cls)
        tok._init_loaded(loaded, os.fspath(path_or_id))
        return tok
