"""Server settings: command-line flags win over `HAVEN_*` environment variables over defaults."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import HavenError
from .storage.lfs import DEFAULT_MAX_OBJECT_SIZE as DEFAULT_MAX_LFS_OBJECT  # 50 GB, as the public Hub

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


class SettingsError(HavenError, ValueError):
    """A setting (flag or HAVEN_* variable) has a value the server cannot use."""


DTYPES = ("float32", "bfloat16", "float16", "auto")  # what --inference-dtype takes, as `haven run --dtype`
QUANTIZATIONS = ("8bit", "4bit")  # --inference-load-in-8bit / --inference-load-in-4bit
_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


def parse_device(value: str, name: str) -> str:
    """cpu, auto (cuda when this machine has it, else cpu), cuda or cuda:N; a GPU this machine does
    not have is a SettingsError (said at start, not at each model's load)."""
    device = value.strip().lower()
    if not _DEVICE.fullmatch(device):
        raise SettingsError(f"{name}={value!r} is not a device: use cpu, auto, cuda or cuda:N.")
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise SettingsError(f"{name}={value!r}: this machine has {count} CUDA device(s); use cpu or auto.")
    return device


def _optional(value: str | None, choices: tuple[str, ...], name: str) -> str:
    """"" when unset, else one of `choices` (a SettingsError naming the setting otherwise)."""
    text = (value or "").strip().lower()
    if text and text not in choices:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}.")
    return text


def parse_size(value: int | str, name: str) -> int:
    """Bytes from an int or a string such as "50GB", "500M", "2GiB", "1048576" (k/M/G/T are powers
    of 1000, Ki/Mi/Gi/Ti of 1024). Raises SettingsError naming the setting."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.fullmatch(str(value).strip())
        if not match:
            raise SettingsError(f"{name}={value!r} is not a size: give bytes, or a number with KB, MB, GB, TB "
                                "(or KiB, MiB, GiB, TiB), e.g. 50GB.")
        unit = (match.group(2) or "").lower().removesuffix("b")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise SettingsError(f"{name}={value!r} must be at least 1 byte.")
    return size


def parse_seconds(value: float | str, name: str) -> float:
    """A positive number of seconds ("90", "2.5"); anything else is a SettingsError naming the setting."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={value!r} is not a number of seconds, e.g. 120 or 2.5.") from None
    if not seconds > 0 or seconds == float("inf"):
        raise SettingsError(f"{name}={value!r} must be a positive, finite number of seconds.")
    return seconds


def parse_bool(value: str, name: str) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); anything else is a SettingsError naming the setting."""
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={value!r} is not a yes/no value: use 1 or 0 (true/false, yes/no, on/off).")


@dataclass
class Settings:
    """Everything `haven serve` needs. Build it with `Settings.load(...)`."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # base URL clients use; default http://host:port
    db_url: str = ""  # SQLAlchemy URL; default sqlite:///DATA/haven.db (WAL mode)
    secret: str = ""  # HMAC key for signed LFS hrefs; generated under DATA when unset
    max_lfs_object: int = DEFAULT_MAX_LFS_OBJECT  # bytes; larger LFS uploads are refused (413)
    signup: bool = True  # anyone may create an account at /join (--no-signup / HAVEN_SIGNUP=0 turn it off)
    blob_store: str = ""  # where LFS objects and xorbs live: "" = DATA, a directory, or s3://bucket/prefix
    inference: bool = True  # the inference API (/models, /v1) runs in this process (--no-inference)
    inference_memory: int = 4 * 10**9  # bytes of model weights the inference API keeps loaded (LRU)
    inference_queue: int = 256  # inference requests that may wait per model; more are answered 429
    inference_timeout: float = 120.0  # seconds an inference request may take before it is answered 504
    inference_workers: tuple[str, ...] = ()  # `haven worker` URLs the inference API is handed to (--inference-worker)
    worker_secret: str = ""  # shared by a hub and its inference workers (HAVEN_WORKER_SECRET only: never a flag)
    # how served models load, as `haven run`'s flags of the same names load them
    inference_device: str = "cpu"  # cpu, auto, cuda, cuda:N (--inference-device)
    inference_dtype: str = ""  # "" (as the pipeline loads: float32), or one of DTYPES (--inference-dtype)
    inference_quantization: str = ""  # "", or one of QUANTIZATIONS (--inference-load-in-8bit / -4bit)
    cas_url: str = ""  # the Xet CAS clients are sent to; default PUBLIC_URL/cas (this process)

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry `Secure` when the hub is reached over https."""
        return self.public_url.lower().startswith("https://")

    @classmethod
    def load(
        cls,
        *,
        data_dir: str | os.PathLike | None = None,
        host: str | None = None,
        port: int | None = None,
        public_url: str | None = None,
        db_url: str | None = None,
        secret: str | None = None,
        max_lfs_object: int | str | None = None,
        signup: bool | None = None,
        blob_store: str | None = None,
        inference: bool | None = None,
        inference_memory: int | str | None = None,
        inference_queue: int | None = None,
        inference_timeout: float | str | None = None,
        inference_workers: list[str] | None = None,
        inference_device: str | None = None,
        inference_dtype: str | None = None,
        inference_quantization: str | None = None,
        cas_url: str | None = None,
    ) -> Settings:
        env = os.environ
        data = Path(data_dir or env.get("HAVEN_DATA") or "./haven-data").expanduser().resolve()
        settings = cls(
            data_dir=data,
            host=host or env.get("HAVEN_HOST") or "127.0.0.1",
            port=int(port or env.get("HAVEN_PORT") or 8080),
            public_url=public_url or env.get("HAVEN_PUBLIC_URL") or "",
            db_url=db_url or env.get("HAVEN_DB_URL") or "",
            secret=secret or env.get("HAVEN_SECRET") or "",
            max_lfs_object=parse_size(
                max_lfs_object or env.get("HAVEN_MAX_LFS_OBJECT") or DEFAULT_MAX_LFS_OBJECT, "HAVEN_MAX_LFS_OBJECT"
            ),
            signup=parse_bool(env.get("HAVEN_SIGNUP", "1"), "HAVEN_SIGNUP") if signup is None else signup,
            blob_store=blob_store or env.get("HAVEN_BLOB_STORE") or "",
            inference=parse_bool(env.get("HAVEN_INFERENCE", "1"), "HAVEN_INFERENCE") if inference is None else inference,
            inference_memory=parse_size(
                inference_memory or env.get("HAVEN_INFERENCE_MEMORY") or 4 * 10**9, "HAVEN_INFERENCE_MEMORY"
            ),
            inference_queue=parse_size(
                inference_queue or env.get("HAVEN_INFERENCE_QUEUE") or 256, "HAVEN_INFERENCE_QUEUE"
            ),
            inference_timeout=parse_seconds(
                inference_timeout if inference_timeout is not None else env.get("HAVEN_INFERENCE_TIMEOUT") or 120.0,
                "HAVEN_INFERENCE_TIMEOUT",
            ),
            inference_workers=tuple(
                u.strip().rstrip("/")
                for u in (inference_workers or env.get("HAVEN_INFERENCE_WORKERS", "").split(","))
                if u.strip()
            ),
            worker_secret=env.get("HAVEN_WORKER_SECRET", ""),
            inference_device=parse_device(
                inference_device or env.get("HAVEN_INFERENCE_DEVICE") or "cpu", "HAVEN_INFERENCE_DEVICE"
            ),
            inference_dtype=_optional(inference_dtype or env.get("HAVEN_INFERENCE_DTYPE"), DTYPES, "HAVEN_INFERENCE_DTYPE"),
            inference_quantization=_optional(
                inference_quantization or env.get("HAVEN_INFERENCE_QUANTIZATION"), QUANTIZATIONS,
                "HAVEN_INFERENCE_QUANTIZATION",
            ),
            cas_url=(cas_url or env.get("HAVEN_CAS_URL") or "").rstrip("/"),
        )
        if not settings.public_url:
            shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
            settings.public_url = f"http://{shown}:{settings.port}"
        settings.public_url = settings.public_url.rstrip("/")
        if not settings.db_url:
            settings.db_url = f"sqlite:///{data / 'haven.db'}"
        return settings

    def inference_model_options(self) -> dict:
        """`pipeline()` keyword arguments for every model the inference API loads."""
        options: dict = {"device": self.inference_device}
        if self.inference_dtype:
            options["dtype"] = self.inference_dtype
        if self.inference_quantization:
            options[f"load_in_{self.inference_quantization}"] = True
        return options

    def prepare(self) -> None:
        """Create the data dir layout and load (or create) the signing secret."""
        for sub in ("repos/models", "repos/datasets", "lfs/objects", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        if not self.secret:
            path = self.data_dir / "secret"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
            self.secret = path.read_text().strip()
