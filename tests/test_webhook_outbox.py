"""The webhook outbox on its own: the retry schedule (pure), and the SQLite store's order
per endpoint and room, disabled endpoints, replays and pruning (a real file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signalling.webhook_store import NewEvent, WebhookStore
from signalling.webhooks import backoff, origin

A, B = "https://a.example/hooks", "https://b.example/hooks?key=secret"


def test_the_first_retry_comes_within_a_second_then_doubles_up_to_five_minutes() -> None:
    low = [backoff(n, 1.0, 300.0, lambda: 0.0) for n in range(1, 13)]
    high = [backoff(n, 1.0, 300.0, lambda: 1.0) for n in range(1, 13)]
    assert high == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert low == [h / 2 for h in high], "jitter spreads each wait over its upper half"
    assert 0.5 <= backoff(1, 1.0, 300.0, lambda: 0.37) <= 1.0


def test_a_day_of_retries_is_a_few_hundred_tries() -> None:
    waited, tries = 0.0, 0
    while waited < 24 * 3600:
        tries += 1
        waited += backoff(tries, 1.0, 300.0, lambda: 1.0)
    assert 280 <= tries <= 300


def test_endpoints_are_named_by_their_origin_only() -> None:
    assert origin(B) == "https://b.example:443"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WebhookStore]:
    outbox = WebhookStore(tmp_path / "webhooks.sqlite3")
    await outbox.start()
    yield outbox
    await outbox.close()


def event(event_id: str, room: str, at: float = 100.0) -> NewEvent:
    return NewEvent(event_id, "participant_joined", room, b"{}", at)


async def heads(store: WebhookStore) -> list[tuple[str, str]]:
    return [(h.event_id, h.endpoint) for h in await store.heads()]


async def test_a_rooms_later_event_waits_while_an_earlier_one_is_retried(
    store: WebhookStore,
) -> None:
    await store.add([event("a1", "room-a"), event("b1", "room-b"), event("a2", "room-a")], [A], 60)
    assert await heads(store) == [("a1", A), ("b1", A)]
    first = (await store.heads())[0]
    await store.mark_retry(first.seq, A, 500.0, "HTTP 500")
    assert await heads(store) == [("b1", A), ("a1", A)], "room-b goes on; a2 still waits"
    await store.mark_sent(first.seq, A, 501.0)
    assert ("a2", A) in await heads(store)


async def test_each_endpoint_has_its_own_queue(store: WebhookStore) -> None:
    await store.add([event("a1", "room-a"), event("a2", "room-a")], [A, B], 60)
    both = await store.heads()
    assert sorted((h.event_id, h.endpoint) for h in both) == [("a1", A), ("a1", B)]
    on_a = next(h for h in both if h.endpoint == A)
    await store.mark_sent(on_a.seq, A, 1.0)
    assert sorted(await heads(store)) == [("a1", B), ("a2", A)]


async def test_a_disabled_endpoint_fails_its_deliveries_and_takes_no_new_ones(
    store: WebhookStore,
) -> None:
    await store.add([event("a1", "room-a"), event("a2", "room-a")], [A, B], 60)
    assert await store.disable(B, 5.0, "410 Gone") == 2
    await store.add([event("a3", "room-a")], [A, B], 60)
    assert {e for _, e in await heads(store)} == {A}
    failed = await store.listing(["failed"], 10)
    assert [(r.event_id, r.last_error) for r in failed] == [("a1", "410 Gone"), ("a2", "410 Gone")]
    assert await store.disabled() == {B: "410 Gone"}
    assert await store.enable(B) and not await store.enable(B)


async def test_replay_makes_failed_deliveries_due_with_a_new_give_up_time(
    store: WebhookStore,
) -> None:
    await store.add([event("a1", "room-a"), event("a2", "room-b")], [A], 60)
    for head in await store.heads():
        await store.mark_failed(head.seq, A, 200.0, "HTTP 503")
    assert await store.heads() == []
    assert await store.replay(["a2", "nope"], 1000.0, 60) == 1
    [again] = await store.heads()
    assert (again.event_id, again.attempts, again.next_at, again.give_up_at) == (
        "a2", 0, 1000.0, 1060.0,
    )  # fmt: skip
    assert await store.replay(None, 1000.0, 60) == 1
    assert await store.oldest_pending() == (2, 100.0)


async def test_an_event_is_stored_once_and_old_deliveries_are_pruned(
    store: WebhookStore,
) -> None:
    await store.add([event("a1", "room-a"), event("a1", "room-a")], [A], 60)
    [head] = await store.heads()
    await store.mark_sent(head.seq, A, 10.0)
    await store.add([event("a2", "room-a")], [A], 60)
    assert await store.prune(sent_before=20.0, failed_before=0.0) == 1
    assert await heads(store) == [("a2", A)]
    assert [r.event_id for r in await store.listing(["sent", "pending"], 10)] == ["a2"]


async def test_the_outbox_file_is_private(store: WebhookStore) -> None:
    assert store.path.stat().st_mode & 0o077 == 0
