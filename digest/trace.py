"""Stage timings for benchmarks, without patching internals: production code names its stages, and nothing is
measured unless a tracer is installed (benchmarks/scale.py installs one; the cost otherwise is one check a call).

A tracer is a function of a stage name that returns a context manager, entered around that stage's work.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import ParamSpec, TypeVar

Tracer = Callable[[str], AbstractContextManager[object]]
P = ParamSpec("P")
R = TypeVar("R")

_tracer: Tracer | None = None


@contextlib.contextmanager
def tracing(tracer: Tracer) -> Iterator[None]:
    """Install `tracer` for the duration of a with block (one at a time, in this process)."""
    global _tracer
    previous, _tracer = _tracer, tracer
    try:
        yield
    finally:
        _tracer = previous


def stage(name: str) -> AbstractContextManager[object]:
    """Around a stage's work: `with trace.stage("ranking"): ...`."""
    return _tracer(name) if _tracer is not None else contextlib.nullcontext()


def traced(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A function whose every call is the stage `name`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            if _tracer is None:
                return function(*args, **kwargs)
            with _tracer(name):
                return function(*args, **kwargs)

        return call

    return decorate
