"""Sign-up with double opt-in, /subscribe (issue 18): being built; its routes join the app here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

if TYPE_CHECKING:
    from digest.web.app import Handlers


def routes(app: Handlers) -> list[Route]:
    return []
