"""Reading tokenizer files: tokenizer_config.json, special_tokens_map.json, and the legacy
vocabulary formats (vocab.txt, vocab.json + merges.txt, sentencepiece .model) turned into a
`tokenizers.Tokenizer` equivalent to the one the reference library builds from them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import TokenizerError

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
VERY_LARGE_INTEGER = int(1e30)  # "no limit", as the reference writes it in model_max_length

BERT_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]
PLAIN_INPUTS = ["input_ids", "attention_mask"]
_ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
_BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


@dataclass(frozen=True)
class Profile:
    """What a reference `tokenizer_class` implies: legacy format, inputs, default special tokens."""

    family: str  # wordpiece | roberta | gpt2 | camembert | xlmroberta | llama | generic
    model_input_names: list[str]
    specials: dict[str, str] = field(default_factory=dict)
    padding_side: str = "right"
    mask_options: dict[str, bool] = field(default_factory=dict)  # AddedToken flags the class gives <mask>


PROFILES = {
    "bert": Profile("wordpiece", BERT_INPUTS, _BERT_SPECIALS),
    "distilbert": Profile("wordpiece", PLAIN_INPUTS, _BERT_SPECIALS),
    "roberta": Profile("roberta", PLAIN_INPUTS, _ROBERTA_SPECIALS),
    "camembert": Profile("camembert", PLAIN_INPUTS, _ROBERTA_SPECIALS, mask_options={"lstrip": True}),
    "xlmroberta": Profile("xlmroberta", PLAIN_INPUTS, _ROBERTA_SPECIALS),
    "gpt2": Profile(
        "gpt2", PLAIN_INPUTS, dict.fromkeys(("unk_token", "bos_token", "eos_token"), "<|endoftext|>")
    ),
    "llama": Profile(
        "llama", PLAIN_INPUTS, {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}, "left"
    ),
    "generic": Profile("generic", PLAIN_INPUTS),
}


def profile_for(tokenizer_class: str | None) -> Profile:
    """`BertTokenizerFast` -> the BERT profile; unknown classes get the generic one."""
    name = (tokenizer_class or "").lower()
    for suffix in ("fast", "tokenizer"):
        name = name.removesuffix(suffix)
    return PROFILES.get(name, PROFILES["generic"])


def read_json(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read {path}: {e}; fix or delete the file") from e
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} must hold a JSON object")
    return data


def token_content(value: Any) -> str | None:
    """A special token as written by any reference version: "x", {"content": "x", ...} or None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return value["content"]
    return str(value)


def token_options(value: Any) -> dict[str, bool]:
    """lstrip/rstrip/... flags of a token written as a dict (AddedToken), else {}."""
    if not isinstance(value, dict):
        return {}
    return {
        k: bool(value[k]) for k in ("lstrip", "rstrip", "single_word", "normalized", "special") if k in value
    }


# ---------------------------------------------------------------------------------------------
# Legacy vocabularies
# ---------------------------------------------------------------------------------------------


def build_wordpiece(vocab_path: str, config: dict[str, Any], unk_token: str):
    """BERT WordPiece from vocab.txt, normalised as `do_lower_case`/`strip_accents` say."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    with open(vocab_path, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk_token))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=config.get("do_lower_case", True),
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    cls, sep = (
        token_content(config.get("cls_token")) or "[CLS]",
        token_content(config.get("sep_token")) or "[SEP]",
    )
    if cls in vocab and sep in vocab:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
    return tok


def build_byte_bpe(vocab_path: str, merges_path: str, config: dict[str, Any], roberta: bool):
    """Byte-level BPE (GPT-2, RoBERTa) from vocab.json + merges.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    merges = []
    with open(merges_path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith("#version"):
                left, _, right = line.partition(" ")
                merges.append((left, right))
    add_prefix_space = bool(config.get("add_prefix_space", False))
    tok = Tokenizer(
        models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    if roberta:
        sep = token_content(config.get("sep_token")) or "</s>"
        cls = token_content(config.get("cls_token")) or "<s>"
        trim = bool(config.get("trim_offsets", True))
        tok.post_processor = processors.RobertaProcessing(
            (sep, vocab[sep]), (cls, vocab[cls]), trim, add_prefix_space
        )
    return tok


def _read_spm(path: str):
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as e:  # the optional extra is not installed
        raise TokenizerError(
            f"reading {path} needs the sentencepiece and protobuf packages: pip install 'haven[sentencepiece]'"
        ) from e
    proto = sentencepiece_model_pb2.ModelProto()
    with open(path, "rb") as f:
        try:
            proto.ParseFromString(f.read())
        except Exception as e:
            raise TokenizerError(f"{path} is not a sentencepiece model: {e}") from e
    return proto


_SPM_CONTROL, _SPM_USER_DEFINED = 3, 4


def spm_control_tokens(proto) -> list[str]:
    """Control pieces (<s>, </s>, ...): the reference lists them as extra special tokens."""
    return [p.piece for p in proto.pieces if p.type == _SPM_CONTROL]


def build_fairseq_spm(path: str, config: dict[str, Any], layout: str):
    """A sentencepiece Unigram model in fairseq's id layout, as CamemBERT and XLM-RoBERTa use it.

    camembert:  <s>NOTUSED <pad> </s>NOTUSED <unk> <unk>NOTUSED, the pieces after sentencepiece's
                own <unk>, then <mask>.
    xlmroberta: <s> <pad> </s> <unk>, the pieces after sentencepiece's <unk> <s> </s>, then <mask>.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    proto = _read_spm(path)
    name = {k: token_content(config.get(f"{k}_token")) or v for k, v in _FAIRSEQ_DEFAULTS.items()}
    if layout == "camembert":
        vocab = [("<s>NOTUSED", 0.0), (name["pad"], 0.0), ("</s>NOTUSED", 0.0), (name["unk"], 0.0)]
        vocab += [("<unk>NOTUSED", -100.0)] + [(p.piece, p.score) for p in proto.pieces[1:]]
    else:
        vocab = [(name["bos"], 0.0), (name["pad"], 0.0), (name["eos"], 0.0), (name["unk"], 0.0)]
        vocab += [(p.piece, p.score) for p in proto.pieces[3:]]
    vocab.append((name["mask"], 0.0))
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    if proto.normalizer_spec.precompiled_charsmap:
        tok.normalizer = normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap)
    scheme = "always" if config.get("add_prefix_space", True) else "never"
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=True),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    return tok, spm_control_tokens(proto) if layout == "camembert" else []


_FAIRSEQ_DEFAULTS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}


def spm_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges recovered from a sentencepiece vocabulary: every split of a piece into two known
    pieces, ranked by the piece's id (sentencepiece ranks pieces by merge order), then left length."""
    merges = []
    for piece, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in vocab and right in vocab:
                merges.append((left, right))
    return merges


def build_spm_bpe(path: str, config: dict[str, Any]):
    """Llama-style BPE with byte fallback from a sentencepiece BPE model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    proto = _read_spm(path)
    if proto.trainer_spec.model_type == 1:  # unigram
        return build_spm_unigram(proto, config)
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    tok = Tokenizer(models.BPE(vocab, spm_merges(vocab), fuse_unk=True, byte_fallback=True, dropout=None))
    add_prefix_space = config.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else add_prefix_space
    legacy = config.get("legacy", False)
    scheme = ("first" if not legacy else "always") if add_prefix_space else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    return tok, spm_control_tokens(proto)


def build_spm_unigram(proto, config: dict[str, Any]):
    """A plain sentencepiece Unigram model (no fairseq id shift)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = [(p.piece, p.score) for p in proto.pieces]
    tok = Tokenizer(
        models.Unigram(
            vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=proto.trainer_spec.byte_fallback
        )
    )
    if proto.normalizer_spec.precompiled_charsmap:
        tok.normalizer = normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap)
    scheme = "always" if config.get("add_prefix_space", True) else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    return tok, spm_control_tokens(proto)


LEGACY_FILES = (
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)


def build_legacy(files: dict[str, str], config: dict[str, Any], profile: Profile, unk_token: str | None):
    """Build the backend from whichever legacy files `files` (name -> local path) holds.

    Returns (tokenizers.Tokenizer, extra special tokens found in the files).
    """
    spm = files.get("sentencepiece.bpe.model") or files.get("spiece.model") or files.get("tokenizer.model")
    family = profile.family
    if "vocab.txt" in files and family in ("wordpiece", "generic"):
        return build_wordpiece(files["vocab.txt"], config, unk_token or "[UNK]"), []
    if "vocab.json" in files and "merges.txt" in files and family in ("roberta", "gpt2", "generic"):
        return build_byte_bpe(
            files["vocab.json"], files["merges.txt"], config, roberta=family == "roberta"
        ), []
    if spm is not None:
        if family in ("camembert", "xlmroberta"):
            return build_fairseq_spm(spm, config, family)
        return build_spm_bpe(spm, config)
    if "vocab.txt" in files:
        return build_wordpiece(files["vocab.txt"], config, unk_token or "[UNK]"), []
    if "vocab.json" in files and "merges.txt" in files:
        return build_byte_bpe(files["vocab.json"], files["merges.txt"], config, roberta=False), []
    return None, []


def local_files(resolve, names: tuple[str, ...]) -> dict[str, str]:
    """name -> local path for each of `names` that exists (resolve returns None for a miss)."""
    out = {}
    for name in names:
        path = resolve(name)
        if path is not None and os.path.isfile(path):
            out[name] = path
    return out
