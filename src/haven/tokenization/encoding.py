"""`BatchEncoding`: the dict a tokenizer call returns, with attribute access and `.to(device)`."""

from __future__ import annotations

from typing import Any

from ..errors import TokenizerError


def to_tensors(data: dict[str, Any], return_tensors: str | None) -> dict[str, Any]:
    """Turn each (batched, rectangular) list of lists into a torch tensor or numpy array."""
    if return_tensors is None:
        return data
    if return_tensors not in ("pt", "np"):
        raise TokenizerError(f"return_tensors={return_tensors!r} is not supported; use 'pt', 'np' or None")
    out = {}
    for key, value in data.items():
        lengths = {len(row) for row in value} if value and isinstance(value[0], list) else set()
        if len(lengths) > 1:
            raise TokenizerError(
                f"cannot make a tensor of {key!r}: the sequences have different lengths {sorted(lengths)}; "
                "pass padding=True (and truncation=True for inputs longer than the model accepts)"
            )
        if return_tensors == "pt":
            import torch

            out[key] = torch.tensor(value, dtype=torch.long)
        else:
            import numpy as np

            out[key] = np.asarray(value, dtype=np.int64)
    return out


class BatchEncoding(dict):
    """Output of `Tokenizer.__call__`: `input_ids`, `attention_mask`, ... as keys and attributes.

    `encodings` keeps the `tokenizers.Encoding` of each sequence, which gives `tokens(i)`,
    `word_ids(i)` and `sequence_ids(i)`.
    """

    def __init__(self, data: dict[str, Any] | None = None, encodings: list | None = None):
        super().__init__(data or {})
        self.encodings = encodings

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key {name!r}; keys: {list(self)}") from None

    def __getstate__(self) -> dict:
        return {"data": dict(self), "encodings": self.encodings}

    def __setstate__(self, state: dict) -> None:
        self.update(state["data"])
        self.encodings = state["encodings"]

    def _encoding(self, index: int):
        if not self.encodings:
            raise TokenizerError(
                "this BatchEncoding holds no token alignment (it was not built by a Tokenizer call)"
            )
        return self.encodings[index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        """Token strings of sequence `batch_index` (special and pad tokens included)."""
        return list(self._encoding(batch_index).tokens)

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Index of the word each token comes from; None for special and pad tokens."""
        return list(self._encoding(batch_index).word_ids)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """0 for tokens of the first text, 1 for the pair text, None for special tokens."""
        return list(self._encoding(batch_index).sequence_ids)

    def _split(self, batch_or_index: int, index: int | None) -> tuple[int, int]:
        return (0, batch_or_index) if index is None else (batch_or_index, index)

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        """Index of the token covering character `char_index` of the text (None if none does)."""
        b, c = self._split(batch_or_char_index, char_index)
        return self._encoding(b).char_to_token(c, sequence_index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None):
        """(start, end) characters of a token in its text, or None for special tokens."""
        b, t = self._split(batch_or_token_index, token_index)
        span = self._encoding(b).token_to_chars(t)
        return None if span is None else tuple(span)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None):
        b, t = self._split(batch_or_token_index, token_index)
        return self._encoding(b).token_to_word(t)

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ):
        """(start, end) token span of a word, or None."""
        b, w = self._split(batch_or_word_index, word_index)
        span = self._encoding(b).word_to_tokens(w, sequence_index)
        return None if span is None else tuple(span)

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0):
        b, w = self._split(batch_or_word_index, word_index)
        span = self._encoding(b).word_to_chars(w, sequence_index)
        return None if span is None else tuple(span)

    def to(self, device: Any) -> BatchEncoding:
        """Move every tensor value to `device` (in place); returns self."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def as_list(ids: Any) -> Any:
    """Lists stay lists; tensors and arrays become (nested) lists of ints."""
    if hasattr(ids, "tolist"):
        return ids.tolist()
    if isinstance(ids, (list, tuple)):
        return [as_list(i) if not isinstance(i, int) else i for i in ids]
    return ids


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces WordPiece decoding leaves before punctuation and in contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def is_pair_list(item: Any) -> bool:
    return isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)


def pad_batch(
    rows: list[dict[str, list[int]]],
    *,
    length: int | None,
    pad_to_multiple_of: int | None,
    side: str,
    pad_id: int,
    pad_type_id: int,
    attention_mask: bool,
) -> dict[str, list[list[int]]]:
    """Pad already-encoded rows (dicts of input_ids, attention_mask, ...) to one length.

    `length` None pads to the longest row. The attention mask gets 0, token types `pad_type_id`,
    the special-tokens mask 1 — what the reference's `pad` writes.
    """
    target = length if length is not None else max((len(r["input_ids"]) for r in rows), default=0)
    if pad_to_multiple_of and target % pad_to_multiple_of:
        target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": pad_type_id, "special_tokens_mask": 1}
    out: dict[str, list[list[int]]] = {}
    for row in rows:
        row = {k: as_list(v) for k, v in row.items()}
        if attention_mask and "attention_mask" not in row:
            row["attention_mask"] = [1] * len(row["input_ids"])
        missing = max(target - len(row["input_ids"]), 0)
        for key, values in row.items():
            if key in fill and missing:
                extra = [fill[key]] * missing
                values = values + extra if side == "right" else extra + values
            out.setdefault(key, []).append(values)
    return out
