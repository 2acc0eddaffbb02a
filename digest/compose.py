"""From a subscriber to a finished message, for a preview: plan (candidates + ranking), links, render, compose.

A send composes many at once (digest.send, digest.mail.composer) from the same plan function and the same
digest.render.email.render_and_compose, so a preview is exactly what the next send produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import Message

from jinja2 import Environment

from digest.config import Config
from digest.links import Links
from digest.mail.message import RenderedEmail, new_message_id
from digest.model_cache import model_source
from digest.plan import DigestPlan, plan_digest
from digest.render.email import render_and_compose
from digest.store import Store
from digest.subscribers import Profile
from digest.tokens import server_secret, settings_key


@dataclass(frozen=True)
class ComposedDigest:
    plan: DigestPlan
    links: Links
    rendered: RenderedEmail | None = None
    message: Message | None = None
    message_id: str | None = None

    @property
    def is_empty(self) -> bool:
        return self.plan.is_empty


def links_for(store: Store, config: Config, profile: Profile, *, create_token: bool) -> Links:
    """Links back to `digest serve`; the token is made on first send, and only read by a preview."""
    if not config.web.base_url:
        return Links()
    token = store.token(profile.id) if create_token else store.subscriber_state(profile.id).token
    # The settings key needs the server's secret; a preview does not make it (it writes nothing).
    secret = server_secret(store, create=create_token)
    settings = settings_key(secret, token) if secret and token else "preview-settings-key-made-on-first-send"
    return Links(config.web.base_url, token or "preview-token-made-on-first-send", profile.id, settings)


def compose_digest(store: Store, config: Config, env: Environment, profile: Profile, now: datetime) -> ComposedDigest:
    """The next digest of one subscriber as a send would make it, writing nothing (a preview): the same plan
    (digest.plan), the same links (without creating a token) and the same render_and_compose as the send's
    composer. An empty plan (nothing to send) is returned without rendering."""
    plan = plan_digest(store, profile, now, model_source(config.rank.policy(), save=False))
    links = links_for(store, config, profile, create_token=False)
    if plan.is_empty:
        return ComposedDigest(plan, links)
    message_id = new_message_id(config.smtp.sender)
    rendered, message = render_and_compose(
        env, plan, links, sender=config.smtp.sender, list_id=config.delivery.list_id, message_id=message_id, now=now
    )
    return ComposedDigest(plan, links, rendered, message, message_id)
