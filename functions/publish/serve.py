"""The `publish_snapshot` entry point's body: decode one Firestore event, publish its change;
and `handle_events`, the same for a batch of events (the local stack's event host).

How a change is published, and how writes are coalesced, is `publisher.py`'s story.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from functions.publish.events import DocumentChange, EventError, decode_cloud_event, decode_event
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


def handle_events(events: Sequence[tuple[Mapping[str, Any], bytes]],
                  publisher: Callable[[], Publisher]) -> list[str | None]:
    """Publish a batch of Firestore document events, each given as its CloudEvent attributes
    and data, in one batch of the publisher: for each, in order, None once it is done
    (published, or acknowledged without a retry: undecodable, ignored, too old, a duplicate)
    or why it failed (its event is to be delivered again)."""
    target = publisher()
    failures: list[str | None] = [None] * len(events)
    changes: list[DocumentChange] = []
    positions: list[int] = []
    for position, (attributes, data) in enumerate(events):
        try:
            changes.append(decode_event(attributes, data))
        except EventError as exc:
            with event_context(attributes, function=FUNCTION, project=target.settings.project):
                log.error("dropping an undecodable event (not retried): %s", exc.message)
            continue
        positions.append(position)
    for position, outcome in zip(positions, target.publish_many(changes), strict=True):
        if not isinstance(outcome, str):
            failures[position] = f"{type(outcome).__name__}: {outcome}"
    return failures
