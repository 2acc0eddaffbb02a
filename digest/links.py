"""The links an email carries back to `digest serve`: unsubscribe, feedback, the personal feed, the settings page.

All are empty until `[web] base_url` is configured; each is guarded by the subscriber's secret token, and the
settings page by the settings key derived from it (digest.tokens), which emails carry and feeds never do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

Rating = Literal["like", "dislike"]


@dataclass(frozen=True)
class Links:
    base_url: str | None = None
    token: str | None = None
    subscriber: str | None = None
    settings_key: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.base_url and self.token)

    def unsubscribe(self) -> str | None:
        return f"{self.base_url}/unsubscribe/{quote(self.token or '', safe='')}" if self.enabled else None

    def settings(self) -> str | None:
        """The reader's own settings page (/settings/<settings key>): profile, pause and resume, ratings."""
        if not self.enabled or not self.settings_key:
            return None
        return f"{self.base_url}/settings/{quote(self.settings_key, safe='')}"

    def feedback(self, paper_id: str, rating: Rating) -> str | None:
        if not self.enabled:
            return None
        return f"{self.base_url}/feedback/{quote(self.token or '', safe='')}/{quote(paper_id, safe='')}/{rating}"

    def feed(self) -> str | None:
        if not self.enabled or not self.subscriber:
            return None
        return f"{self.base_url}/feeds/{quote(self.subscriber, safe='')}.xml?{urlencode({'token': self.token})}"
