"""The project's own error types: each message says what is wrong, which value, and what to do."""

from __future__ import annotations


class NASError(Exception):
    """Base class of every error nas-sampler raises on purpose (the CLI prints these on one line)."""


class GenotypeError(NASError, ValueError):
    """A genotype string or value is malformed or does not fit the search space."""


class ConfigError(NASError, ValueError):
    """A bad preset, option or argument value (the CLI exits 2)."""


class UnknownOperationError(ConfigError, KeyError):
    """An operation name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class SpaceMismatchError(ConfigError):
    """A study already records a different search space (or objectives, or settings) than the one
    given: resuming with other settings is a bad argument (the CLI exits 2)."""


class DataError(NASError, ValueError):
    """A data set that cannot be loaded: missing folder, wrong layout, offline download."""


class BadDataError(DataError, ConfigError):
    """Data the user named that cannot serve: a missing or empty folder, a file that is not an image
    (a bad argument: the CLI exits 2)."""
