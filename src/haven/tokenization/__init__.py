"""Building blocks of `haven.tokenizer`: file loading, encodings, chat templates.

The public names `Tokenizer` and `BatchEncoding` live in `haven.tokenizer`; `AutoTokenizer` and
the named entry points (`BertTokenizer` ...) in `named.py`.
"""
