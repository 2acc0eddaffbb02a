"""From a subscriber to a finished message: plan (candidates + ranking), render, compose.

Preview and send both go through `compose_digest`, so a preview is exactly what the next send produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import Message

from jinja2 import Environment

from digest.config import Config
from digest.links import Links
from digest.message import RenderedEmail, new_message_id
from digest.model_cache import model_source
from digest.plan import DigestPlan, plan_digest
from digest.rank import RankModel
from digest.render.email import render_and_compose
from digest.store import Store
from digest.subscribers import Profile


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
    return Links(config.web.base_url, token or "preview-token-made-on-first-send", profile.id)


def compose_digest(
    store: Store,
    config: Config,
    env: Environment,
    profile: Profile,
    now: datetime,
    *,
    model: RankModel | None = None,
    create_token: bool = False,
    message_id: str | None = None,
    plan: DigestPlan | None = None,
) -> ComposedDigest:
    """The next digest of one subscriber; an empty plan (nothing to send) is returned without rendering.

    `plan`: this subscriber's plan when the caller already made it (send plans many at once with plan_digests,
    which gives what plan_digest would)."""
    if plan is None:  # a preview: the saved model, or one fitted for this preview alone (it writes nothing)
        plan = plan_digest(store, profile, now, model or model_source(config.rank.policy(), save=False))
    links = links_for(store, config, profile, create_token=create_token)
    if plan.is_empty:
        return ComposedDigest(plan, links)
    message_id = message_id or new_message_id(config.smtp.sender)
    rendered, message = render_and_compose(
        env, plan, links, sender=config.smtp.sender, list_id=config.delivery.list_id, message_id=message_id, now=now
    )
    return ComposedDigest(plan, links, rendered, message, message_id)
