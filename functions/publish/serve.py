"""The `publish_snapshot` entry point's body: decode one Firestore event, publish its change.

How a change is published, and how writes are coalesced, is `publisher.py`'s story.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from functions.publish.events import EventError, decode_cloud_event
from functions.publish.publisher import FUNCTION, Publisher
from shared.logs import event_context

log = logging.getLogger("dashboard.publish")


def handle_event(cloud_event: Any, publisher: Callable[[], Publisher]) -> None:
    """Publish one Firestore document event with this instance's publisher (built on first
    use); an undecodable event is logged and acknowledged (a retry cannot help)."""
    target = publisher()
    with event_context(cloud_event, function=FUNCTION, project=target.settings.project):
        try:
            change = decode_cloud_event(cloud_event)
        except EventError as exc:
            log.error("dropping an undecodable event (not retried): %s", exc.message)
            return
        target.publish(change)
