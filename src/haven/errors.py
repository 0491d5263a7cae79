"""Haven's exceptions. Each says what went wrong and what to do next.

Runtime errors derive from the builtin a caller would naturally catch (`ValueError`, `OSError`),
so `except OSError` around `from_pretrained` keeps working as it does with the reference library.
"""

from __future__ import annotations


class HavenError(Exception):
    """Base class of every error Haven raises on purpose."""


# -- runtime: configs, checkpoints, architectures ------------------------------------------------


class ConfigError(HavenError, ValueError):
    """A config.json (or a config argument) is malformed or inconsistent."""


class CheckpointError(HavenError, OSError):
    """A weights file is missing, truncated, corrupt, or does not fit the model."""


class UnknownArchitectureError(HavenError, ValueError):
    """A `model_type` or architecture name Haven does not implement."""


class TokenizerError(HavenError, ValueError):
    """Tokenizer files are missing or malformed, or an input cannot be encoded as asked."""


class InputTooLongError(HavenError, ValueError):
    """An input is longer than the model's context window."""


class PipelineError(HavenError, ValueError):
    """An input or option a pipeline cannot handle; the message says what to pass instead."""


class GenerationError(HavenError, ValueError):
    """Inconsistent generation arguments."""


# -- hub client -----------------------------------------------------------------------------------


class HubError(HavenError, OSError):
    """A request to a hub endpoint failed."""

    def __init__(self, message: str, *, status: int | None = None, server_message: str | None = None):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class RepositoryNotFoundError(HubError):
    """The repository does not exist, or the token in use may not see it."""


class RevisionNotFoundError(HubError):
    """The branch, tag or commit does not exist in the repository."""


class EntryNotFoundError(HubError):
    """The file does not exist at that revision."""


class GatedRepoError(RepositoryNotFoundError):
    """The repository is gated and the caller has not been granted access."""


class HubAuthError(HubError):
    """The token is missing, wrong, or lacks the needed role."""


class LocalEntryNotFoundError(EntryNotFoundError):
    """Offline (or the network failed) and the file is not in the local cache."""
