"""Special tokens of a `Tokenizer`: named ones (bos, eos, unk, sep, pad, cls, mask) as attributes
with `_id` twins, extra ones, and adding tokens to the vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import TokenizerError
from .files import SPECIAL_NAMES, token_content


class SpecialTokensMixin:
    """Needs `self._tokenizer` (a `tokenizers.Tokenizer`), `self._special` (name -> token or None)
    and `self._extra` (extra special tokens)."""

    _tokenizer: Any
    _special: dict[str, str | None]
    _extra: list[str]

    def add_tokens(self, new_tokens: str | Sequence[str], special_tokens: bool = False) -> int:
        """Add tokens to the vocabulary (at the end); returns how many were new."""
        from tokenizers import AddedToken

        new_tokens = [new_tokens] if isinstance(new_tokens, str) else list(new_tokens)
        tokens = [
            t
            if isinstance(t, AddedToken)
            else AddedToken(t, special=special_tokens, normalized=not special_tokens)
            for t in new_tokens
        ]
        if special_tokens:
            return self._tokenizer.add_special_tokens(tokens)
        return self._tokenizer.add_tokens(tokens)

    def add_special_tokens(
        self, special_tokens_dict: dict[str, Any], replace_extra_special_tokens: bool = True
    ) -> int:
        """Set named special tokens (`{"pad_token": "[PAD]"}`) or extra ones
        (`{"additional_special_tokens": [...]}`); new ones join the vocabulary. Returns how many."""
        added = []
        for key, value in special_tokens_dict.items():
            if key in ("additional_special_tokens", "extra_special_tokens"):
                values = [token_content(v) for v in value]
                self._extra = (
                    values if replace_extra_special_tokens else list(dict.fromkeys(self._extra + values))
                )
                added += values
            elif key in SPECIAL_NAMES:
                self._special[key] = token_content(value)
                added.append(token_content(value))
            else:
                raise TokenizerError(
                    f"{key!r} is not a special token name; use one of {SPECIAL_NAMES} "
                    "or 'additional_special_tokens'"
                )
        return self.add_tokens([t for t in added if t is not None], special_tokens=True)

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens (bos, eos, unk, sep, pad, cls, mask order) then the extra ones."""
        named = [t for t in (self._special[n] for n in SPECIAL_NAMES) if t is not None]
        return list(dict.fromkeys(named + self._extra))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    @property
    def additional_special_tokens(self) -> list[str]:
        return list(self._extra)

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        """name -> token for each set special token (and `additional_special_tokens`)."""
        out: dict[str, Any] = {n: t for n, t in self._special.items() if t is not None}
        if self._extra:
            out["additional_special_tokens"] = list(self._extra)
        return out

    def __getattr__(self, name: str) -> Any:
        # bos_token, pad_token_id, ... (kept out of the class body: 14 near-identical properties)
        special = self.__dict__.get("_special")
        if special is not None:
            if name in special:
                return special[name]
            if name.endswith("_id") and name[:-3] in special:
                token = special[name[:-3]]
                return None if token is None else self.convert_tokens_to_ids(token)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SPECIAL_NAMES:
            # Like the reference, this does not add an unknown token to the vocabulary (its id is
            # then the unk id); use add_special_tokens({"pad_token": ...}) for that.
            self._special[name] = token_content(value)
        elif name.endswith("_token_id") and name[:-3] in SPECIAL_NAMES:
            self._special[name[:-3]] = None if value is None else self._tokenizer.id_to_token(value)
        else:
            super().__setattr__(name, value)

    @property
    def pad_token_type_id(self) -> int:
        return 0
