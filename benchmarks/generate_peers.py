"""The peers of benchmarks/generate.py: llama.cpp (llama-cpp-python) and CTranslate2, their
model files made from the benchmark's checkpoints, and how each decodes greedily. How each file
is made is told in generate.py's docstring. Loaded by generate.py from this folder's path (the
folder itself is kept off sys.path there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

LLAMA_CPP = {"llama.cpp-f32": "f32", "llama.cpp-q8_0": "q8_0", "llama.cpp-q4_0": "q4_0"}
PEERS = [*LLAMA_CPP, "ctranslate2-int8"]


def save_tokenizer(path: str, vocab_size: int) -> None:
    """A byte-level BPE with exactly `vocab_size` tokens, for the peers' converters: the 256 byte
    tokens, then merges of byte pairs in a fixed order, then <|endoftext|> (bos, eos and unk)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    pairs = ((a, b) for a in alphabet for b in alphabet)
    merges = [next(pairs) for _ in range(vocab_size - len(vocab) - 1)]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    eos = "<|endoftext|>"
    tokenizer.add_special_tokens([eos])
    assert tokenizer.get_vocab_size() == vocab_size
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=eos, eos_token=eos, unk_token=eos).save_pretrained(path)


def load_llama_cpp(path: str, prompt: list[list[int]], threads: int, new_tokens: int):
    """llama-cpp-python on a GGUF file, one sequence: the prompt evaluated a token at a time, then
    greedy steps (argmax of the last logits, no EOS)."""
    import llama_cpp
    import numpy as np

    (tokens,) = prompt
    llm = llama_cpp.Llama(path, n_ctx=len(tokens) + new_tokens + 8, n_batch=1, n_ubatch=1, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    n_vocab = llm.n_vocab()

    def generate(n: int) -> list[list[int]]:
        llm.reset()
        llm.eval(tokens)
        out = []
        for i in range(n):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
            out.append(int(logits.argmax()))
            if i < n - 1:
                llm.eval(out[-1:])
        return [out]

    return generate, os.path.getsize(path)


def load_ctranslate2(path: str, prompt: list[list[int]], threads: int):
    import ctranslate2

    with open(os.path.join(path, "vocabulary.json"), encoding="utf-8") as f:
        vocabulary = json.load(f)
    generator = ctranslate2.Generator(path, device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1)
    tokens = [[vocabulary[i] for i in row] for row in prompt]

    def generate(n: int) -> list[list[int]]:
        results = generator.generate_batch(tokens, max_length=n, sampling_topk=1, end_token=[],
                                           include_prompt_in_result=False)
        return [r.sequences_ids[0] for r in results]

    return generate, os.path.getsize(os.path.join(path, "model.bin"))


# -- the peers' files: GGUF by llama.cpp's converter, CTranslate2's int8 directory ----------------------------

# llama.cpp's converter with the pre-tokenizer named (see generate.py's docstring); argv: source dir, then its own
CONVERT_GGUF = """
import sys
src = sys.argv.pop(1)
sys.path[:0] = [src, src + "/gguf-py"]
try:
    import conversion.base as defines  # the converter split into a package (2026)
except ImportError:
    import convert_hf_to_gguf as defines
defines.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""
QUANTIZE_GGUF = """
import sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
params.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params))
"""
CONVERT_CT2 = """
import sys
from ctranslate2.converters import TransformersConverter
TransformersConverter(sys.argv[1]).convert(sys.argv[2], quantization="int8", force=True)
"""


def llama_cpp_source(root: str, given: str | None) -> str:
    """The directory holding convert_hf_to_gguf.py: `given` (or its vendor/llama.cpp), else the
    source distribution of the installed llama-cpp-python, downloaded with pip into `root`."""
    import glob
    import importlib.metadata
    import tarfile

    if given:
        for cand in (given, os.path.join(given, "vendor", "llama.cpp")):
            if os.path.exists(os.path.join(cand, "convert_hf_to_gguf.py")):
                return cand
        raise RuntimeError(f"--llama-cpp-src {given}: no convert_hf_to_gguf.py there nor in its vendor/llama.cpp")
    version = importlib.metadata.version("llama_cpp_python")
    dest = os.path.join(root, f"llama-cpp-python-{version}-sdist")
    src = os.path.join(dest, f"llama_cpp_python-{version}", "vendor", "llama.cpp")
    if not os.path.exists(os.path.join(src, "convert_hf_to_gguf.py")):
        cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
               "--no-binary", "llama-cpp-python", "--quiet", "-d", dest]
        run_step(cmd, "pip download of the llama-cpp-python source distribution")
        (archive,) = glob.glob(os.path.join(dest, "*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return src


def run_step(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or [f"exit status {res.returncode}"]
        raise RuntimeError(f"{what} failed: {tail[0]}")


def prepare_peers(engines: list[str], path: str, root: str, given_src: str | None) -> tuple[dict, dict, dict, dict]:
    """({engine: its model file or dir}, {engine: why skipped}, {engine: weight bytes a step reads},
    {engine: what its file holds})."""
    import collections
    import importlib.util

    files, skipped, step, holds = {}, {}, {}, {}
    wanted = [e for e in engines if e in LLAMA_CPP]
    if wanted and importlib.util.find_spec("llama_cpp") is None:
        skipped.update({e: "llama-cpp-python is not installed" for e in wanted})
    elif wanted:
        try:
            src = llama_cpp_source(root, given_src)
            sys.path.insert(0, os.path.join(src, "gguf-py"))
            from gguf import GGUFReader

            for engine in wanted:
                out = f"{path}-{LLAMA_CPP[engine]}.gguf"
                if not os.path.exists(out) and engine == "llama.cpp-q4_0":
                    f32 = f"{path}-f32.gguf"
                    if not os.path.exists(f32):
                        run_step([sys.executable, "-c", CONVERT_GGUF, src, path, "--outfile", f32, "--outtype", "f32"],
                                 "convert_hf_to_gguf.py --outtype f32")
                    run_step([sys.executable, "-c", QUANTIZE_GGUF, f32, out], "llama_model_quantize Q4_0")
                elif not os.path.exists(out):
                    run_step([sys.executable, "-c", CONVERT_GGUF, src, path, "--outfile", out, "--outtype",
                              LLAMA_CPP[engine]], f"convert_hf_to_gguf.py --outtype {LLAMA_CPP[engine]}")
                files[engine] = out
                reader = GGUFReader(out)
                tensors = {t.name: int(t.n_bytes) for t in reader.tensors}
                types = collections.Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1)
                holds[engine] = "matrices " + ", ".join(f"{n} {k}" for k, n in sorted(types.items())) + (
                    f"; output {next(t.tensor_type.name for t in reader.tensors if t.name == 'output.weight')}"
                    if "output.weight" in tensors else "; output tied to token_embd")
                # the input tables are read one row a step, unless the token table is also the (tied) output
                unread = {"position_embd.weight"} | ({"token_embd.weight"} if "output.weight" in tensors else set())
                step[engine] = sum(n for name, n in tensors.items() if name not in unread)
        except Exception as e:  # noqa: BLE001 - a peer that cannot be prepared is skipped, saying why
            skipped.update({e_: f"{type(e).__name__}: {e}" for e_ in wanted if e_ not in files})
    if "ctranslate2-int8" in engines:
        out = f"{path}-ct2-int8"
        if importlib.util.find_spec("ctranslate2") is None:
            skipped["ctranslate2-int8"] = "ctranslate2 is not installed"
        else:
            try:
                if not os.path.exists(os.path.join(out, "model.bin")):
                    run_step([sys.executable, "-c", CONVERT_CT2, path, out], "ctranslate2 TransformersConverter int8")
                files["ctranslate2-int8"] = out
            except RuntimeError as e:
                skipped["ctranslate2-int8"] = str(e)
    return files, skipped, step, holds
