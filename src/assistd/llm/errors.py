"""Errors of the generation layer. Both end a run `failed` with `server_error` and this message."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model cannot be served: its file is missing or unusable, or its engine would not start."""


class EngineError(Exception):
    """An engine could not be reached, or answered with an error. The message names the model and the
    engine (its URL), so the run's `last_error` tells an operator where to look."""
