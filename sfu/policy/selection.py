"""Which publisher goes into which receive slot of one subscriber.

A subscriber has a fixed set of video and audio slots (m-lines, by mid); the
SFU fills them from the last-N order for video and the loudest-N order for
audio, without renegotiating.  Every change of a video slot's source costs a
key-frame request and a visible switch, so assignment is sticky: a
participant who stays selected keeps the slot it is in, and only the slots
whose occupant dropped out are refilled, in slot order, by the newcomers in
priority order.

Pure and deterministic: the same inputs always give the same assignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["assign_slots", "diff", "last_n_order"]

_KINDS = ("audio", "video")


def assign_slots(
    slots: Sequence[tuple[str, str]],
    *,
    subscriber: str,
    current: Mapping[str, str | None],
    video_order: Sequence[str],
    audio_order: Sequence[str],
    pinned: str | None = None,
) -> dict[str, str | None]:
    """Map each (mid, kind) slot of `subscriber` to a participant id or None.

    - the subscriber never receives itself;
    - `pinned`, if it publishes video (is in `video_order`), is selected for
      video first, then the head of `video_order`; audio follows
      `audio_order` (loudest first);
    - a selected participant already in a slot (per `current`) keeps it;
    - each participant fills at most one slot per kind; the rest are None.

    Raises ValueError for a duplicate mid or a kind other than audio/video.
    """
    mids: dict[str, list[str]] = {kind: [] for kind in _KINDS}
    seen: set[str] = set()
    for mid, kind in slots:
        if mid in seen:
            raise ValueError(f"duplicate slot mid {mid!r}")
        if kind not in mids:
            raise ValueError(f"slot {mid!r} has kind {kind!r}, expected audio or video")
        seen.add(mid)
        mids[kind].append(mid)
    video_first = [pinned] if pinned is not None and pinned in video_order else []
    chosen = {
        **_fill(mids["video"], _candidates([*video_first, *video_order], subscriber), current),
        **_fill(mids["audio"], _candidates(audio_order, subscriber), current),
    }
    return {mid: chosen[mid] for mid, _ in slots}


def _candidates(order: Iterable[str], subscriber: str) -> list[str]:
    """`order` without the subscriber and without repeats, first occurrence kept."""
    return [p for p in dict.fromkeys(order) if p != subscriber]


def _fill(
    mids: list[str], candidates: list[str], current: Mapping[str, str | None]
) -> dict[str, str | None]:
    selected = candidates[: len(mids)]
    wanted = set(selected)
    result: dict[str, str | None] = {}
    placed: set[str] = set()
    for mid in mids:  # keep those already in place
        who = current.get(mid)
        if who is not None and who in wanted and who not in placed:
            result[mid] = who
            placed.add(who)
    newcomers = iter([p for p in selected if p not in placed])
    for mid in mids:
        if mid not in result:
            result[mid] = next(newcomers, None)
    return result


def diff(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> dict[str, str | None]:
    """The mids whose occupant changed, with the new occupant (None: emptied or gone)."""
    changed = {mid: who for mid, who in new.items() if old.get(mid) != who}
    for mid, who in old.items():
        if mid not in new and who is not None:
            changed[mid] = None
    return changed


def last_n_order(speaker_history: Sequence[str], publishers: Iterable[str]) -> list[str]:
    """A `video_order`: publishers by most recent dominant speech, then the rest.

    `speaker_history` lists dominant speakers most recent first (repeats and
    non-publishers are ignored); silent publishers keep the order given.
    """
    present = list(dict.fromkeys(publishers))
    members = set(present)
    spoken = [p for p in dict.fromkeys(speaker_history) if p in members]
    heard = set(spoken)
    return spoken + [p for p in present if p not in heard]
