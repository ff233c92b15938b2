"""Errors a user can act on.

Every error genlab raises on bad input is a :class:`GenlabError`. The CLI prints its
message on one line (no traceback unless ``--debug``) and exits with status 2, so
the message must say what went wrong *and* what to do about it.
"""


class GenlabError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(GenlabError):
    """Unknown key, bad value or unknown preset/recipe."""


class DataError(GenlabError):
    """Missing, empty, binary or undecodable data."""


class TokenizerError(GenlabError):
    """Text the tokenizer cannot represent, or a vocabulary mismatch."""


class CheckpointError(GenlabError):
    """Missing, truncated or mismatched checkpoint."""


class RunDirError(GenlabError):
    """A run directory that would be overwritten, or is not a run directory."""
