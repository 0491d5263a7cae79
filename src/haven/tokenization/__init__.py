"""Building blocks of `haven.tokenizer`: file loading, encodings, chat templates.

The public names (`Tokenizer`, `AutoTokenizer`, `BatchEncoding`) live in `haven.tokenizer`.
"""
