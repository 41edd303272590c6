"""Dominant speaker identification from RFC 6464 audio levels (Volfin & Cohen).

The SFU never decodes audio, so it works from the audio level each sender
puts in an RTP header extension (0..127 = -dBov, 127 = silence, plus a
voice-activity flag).  The method follows I. Volfin and I. Cohen, "Dominant
speaker identification for multipoint videoconferencing" (2013), in the
level-based form Jitsi uses, and keeps its idea: a speaker must dominate on
three time scales at once, so a cough or a laugh does not steal the floor.

Per participant:

1. **Frames.**  Time is cut into `frame_s` (20 ms) frames by arrival time.
   A frame's energy is the loudest packet in it, ``127 - level``; a packet
   flagged as non-voice counts as silence (`trust_vad`), and so does energy
   within one sub-band of the participant's noise floor.  The floor is the
   lowest energy of the packets that are not speech (the non-voice ones,
   or all of them without `trust_vad`), allowed to rise only every
   `floor_window_s` (15 s) to the geometric mean of old and new minimum,
   as in Jitsi.  A frame with no packet repeats the previous one for
   `hold_frames` (3: network jitter, 40/60 ms packets), then counts as
   silence (DTX, mute, loss).
2. **Immediate** (one frame): the energy quantized into `subbands` (N1 = 13)
   steps stands in for "how many frequency sub-bands are active".
3. **Medium** (`medium_frames`, N2 = 5 frames = 100 ms): how many of the last
   N2 frames have more than `medium_threshold` (7) active sub-bands.
4. **Long** (`long_blocks`, N3 = 10 blocks = 1 s): how many of the last N3
   medium blocks have more than `long_threshold` (4) active frames.
5. **Speech activity score** for each scale, from the number k of active
   units out of n: the log-likelihood ratio of speech (binomial, p = 0.5)
   against non-speech (exponential with rate lambda = 0.78, 24, 47 for the
   three scales), ``log C(n,k) + k log p + (n-k) log(1-p) - log(lambda) +
   lambda k``, floored at 1e-10.  These are tabled once, so scoring is a
   lookup.

Every `update` (the core calls it each 100-300 ms) compares each challenger
with the current dominant speaker by ``log(score_challenger / score_dominant)``
on the three scales.  A challenger must exceed `c1` (3), `c2` (2) and `c3`
(0) at once: that margin is the hysteresis.  Among several, the one with
the largest medium-scale margin wins.  When everyone is silent all scores
sit at the floor and no margin is exceeded, so the last speaker stays.
With no dominant speaker (at start, or after `remove`), the participant
with the best long/medium/immediate scores among those who have ever spoken
(had a frame above `medium_threshold`) is nominated; nobody is nominated
before anybody has spoken.

In practice, with the default tables: the dominant speaker keeps the floor
while speaking, since a switch needs them quiet in the last frame and in
the whole last 100 ms; a challenger then also needs more fully active
100 ms blocks than them over the last second.  A new speaker who starts as
the old one stops takes over after about half a second, plus the update
interval; a cough of a few hundred ms during a breath does not.

`loudest` ranks participants for the audio slots by an exponential moving
average of the immediate value (time constant `loudness_tau_s`), ties
broken by most recent activity and then by id, so the order is
deterministic.

`add_level` runs per audio packet and is O(1): it only folds the level into
the open frame, closing at most a bounded number of frames (the window
length) when time has moved on.

`log(participant_id)` is the cheaper way in for a packet path: a plain list
to which the caller appends ``(level, voice, now)`` rows (at most `LOG_MAX`;
the compiled receive path does it without running any Python).  The rows are
folded in, in arrival order and exactly as `add_level` would have, at the
next `update`, `loudest` or `remove`, so the per-packet cost is an append.
Which row came first across participants does not matter: every
participant's history is its own, and ties between participants are broken
by id, not by who sent first.
"""

from __future__ import annotations

import math
from typing import TypeVar

__all__ = ["LOG_MAX", "DominantSpeaker", "LevelLog"]

LevelLog = list[tuple[int, bool, float]]  # (level, voice, now) rows not folded in yet
# A log holds at most this many rows (80 s of 20 ms audio); its appenders drop
# what comes beyond.  Every tick drains every group's logs, so only a log
# nobody reads any more (its speaker removed) ever fills.
LOG_MAX = 4096

_V = TypeVar("_V", float, tuple[float, float, float, int])
_MAX_LEVEL = 127
_MIN_SCORE = 1e-10
_P_SPEECH = 0.5


def _log_scores(n: int, lam: float) -> tuple[float, ...]:
    """log(speech activity score) for k = 0..n active units out of n."""
    out = []
    for k in range(n + 1):
        score = (
            math.log(math.comb(n, k))
            + k * math.log(_P_SPEECH)
            + (n - k) * math.log(1 - _P_SPEECH)
            - math.log(lam)
            + lam * k
        )
        out.append(math.log(max(score, _MIN_SCORE)))
    return tuple(out)


class _Speaker:
    """Frame history of one participant; the ring holds immediate values."""

    __slots__ = (
        "floor",
        "frame",
        "frames",
        "gap",
        "head",
        "held",
        "last_active",
        "loudness",
        "next_floor",
        "next_floor_count",
        "open",
    )

    def __init__(self, window: int) -> None:
        self.frames = [0] * window  # immediate values, ring buffer
        self.head = window - 1  # index of the most recent closed frame
        self.frame = -1  # absolute number of the open frame; -1 before any packet
        self.open = -1  # loudest energy in the open frame; -1 if no packet yet
        self.held = 0  # immediate value repeated over short gaps
        self.gap = 0  # empty frames since the last packet
        self.loudness = 0.0
        self.last_active = -1  # frame number of the last active frame, -1 never
        self.floor = 0  # learned noise floor energy; 0 unknown
        self.next_floor = 0
        self.next_floor_count = 0


class DominantSpeaker:
    """Dominant speaker and loudest-N ranking for one group of a room.

    Pure and clock-free: every call takes `now` (seconds, monotonic).
    """

    def __init__(
        self,
        *,
        frame_s: float = 0.020,
        subbands: int = 13,
        medium_frames: int = 5,
        long_blocks: int = 10,
        medium_threshold: int = 7,
        long_threshold: int = 4,
        c1: float = 3.0,
        c2: float = 2.0,
        c3: float = 0.0,
        lambdas: tuple[float, float, float] = (0.78, 24.0, 47.0),
        hold_frames: int = 3,
        trust_vad: bool = True,
        loudness_tau_s: float = 0.2,
        floor_window_s: float = 15.0,
    ) -> None:
        if frame_s <= 0 or subbands < 2 or medium_frames < 1 or long_blocks < 1:
            raise ValueError("frame_s, subbands, medium_frames and long_blocks must be positive")
        self._rate = 1.0 / frame_s
        self._subunit = (_MAX_LEVEL + subbands - 1) // subbands
        self._n2 = medium_frames
        self._n3 = long_blocks
        self._window = medium_frames * long_blocks
        self._medium_threshold = medium_threshold
        self._long_threshold = long_threshold
        self._c = (c1, c2, c3)
        self._log_imm = _log_scores(subbands, lambdas[0])
        self._log_med = _log_scores(medium_frames, lambdas[1])
        self._log_long = _log_scores(long_blocks, lambdas[2])
        self._hold = hold_frames
        self._trust_vad = trust_vad
        self._decay = math.exp(-frame_s / loudness_tau_s)
        self._floor_window = max(1, round(floor_window_s / frame_s))
        self._speakers: dict[str, _Speaker] = {}
        self._logs: dict[str, LevelLog] = {}
        self._current: str | None = None

    @property
    def current(self) -> str | None:
        """The dominant speaker now (None before anybody has spoken)."""
        return self._current

    # --- per packet ------------------------------------------------------------

    def add_level(self, participant_id: str, level: int, voice: bool, now: float) -> None:
        """Record one packet's RFC 6464 level (0..127 -dBov) and voice flag."""
        sp = self._speakers.get(participant_id)
        if sp is None:
            sp = self._speakers[participant_id] = _Speaker(self._window)
        frame = int(now * self._rate)
        if frame > sp.frame:
            self._advance(sp, frame)
        # A frame number below the open one is a stale timestamp: fold it in.
        energy = _MAX_LEVEL - min(max(level, 0), _MAX_LEVEL)
        if energy and (not voice or not self._trust_vad):
            self._learn_floor(sp, energy)
        if (self._trust_vad and not voice) or energy < sp.floor + self._subunit:
            energy = 0
        if energy > sp.open:
            sp.open = energy

    def log(self, participant_id: str) -> LevelLog:
        """The list a packet path appends ``(level, voice, now)`` to (see module doc)."""
        rows = self._logs.get(participant_id)
        if rows is None:
            rows = self._logs[participant_id] = []
        return rows

    def _drain(self) -> None:
        """Fold every log's rows in, in arrival order, and empty the logs."""
        for pid, rows in self._logs.items():
            if rows:
                batch = rows[:]
                del rows[:]  # the appenders keep this very list
                sp = self._speakers.get(pid)
                if sp is None:
                    sp = self._speakers[pid] = _Speaker(self._window)
                self._fold(sp, batch)

    def _fold(self, sp: _Speaker, rows: LevelLog) -> None:
        """`add_level` for each row, with the common case (the next frame) inline."""
        rate, subunit, decay = self._rate, self._subunit, self._decay
        trust_vad, threshold, window = self._trust_vad, self._medium_threshold, self._window
        for level, voice, now in rows:
            frame = int(now * rate)
            if frame > sp.frame:
                if frame == sp.frame + 1 and sp.open >= 0:
                    # `_advance` closing one frame that had packets (`_push` inline).
                    held = sp.held = sp.open // subunit
                    sp.gap = 0
                    head = sp.head = (sp.head + 1) % window
                    sp.frames[head] = held
                    sp.loudness = sp.loudness * decay + held * (1.0 - decay)
                    if held > threshold:
                        sp.last_active = sp.frame
                    sp.frame = frame
                    sp.open = -1
                else:
                    self._advance(sp, frame)
            # `_MAX_LEVEL - min(max(level, 0), _MAX_LEVEL)` without the two calls
            energy = _MAX_LEVEL if level < 0 else 0 if level > _MAX_LEVEL else _MAX_LEVEL - level
            if energy and (not voice or not trust_vad):
                self._learn_floor(sp, energy)
            if (trust_vad and not voice) or energy < sp.floor + subunit:
                energy = 0
            if energy > sp.open:
                sp.open = energy

    def _learn_floor(self, sp: _Speaker, energy: int) -> None:
        """Track the minimum noise energy; let it rise only slowly (15 s windows)."""
        if sp.floor == 0 or energy < sp.floor:
            sp.floor = energy
            sp.next_floor = sp.next_floor_count = 0
            return
        if sp.next_floor == 0 or energy < sp.next_floor:
            sp.next_floor = energy
        sp.next_floor_count += 1
        if sp.next_floor_count >= self._floor_window:
            # Geometric mean: a louder room raises the floor, but gradually.
            sp.floor = int(math.sqrt(sp.floor * sp.next_floor))
            sp.next_floor = sp.next_floor_count = 0

    def _advance(self, sp: _Speaker, frame: int) -> None:
        """Close the open frame and any empty ones before `frame`, then open it."""
        if sp.frame >= 0:
            if sp.open >= 0:
                sp.held = sp.open // self._subunit
                sp.gap = 0
                self._push(sp, sp.held, sp.frame)
            else:
                self._push_empty(sp, sp.frame)
            empty = frame - sp.frame - 1
            while empty > 0 and sp.gap < self._hold:
                self._push_empty(sp, frame - empty)
                empty -= 1
            if empty >= self._window:
                sp.frames = [0] * self._window
                sp.loudness = 0.0
            else:
                for _ in range(empty):
                    self._push(sp, 0, 0)
        sp.frame = frame
        sp.open = -1

    def _push_empty(self, sp: _Speaker, frame: int) -> None:
        sp.gap += 1
        self._push(sp, sp.held if sp.gap <= self._hold else 0, frame)

    def _push(self, sp: _Speaker, immediate: int, frame: int) -> None:
        sp.head = (sp.head + 1) % self._window
        sp.frames[sp.head] = immediate
        sp.loudness = sp.loudness * self._decay + immediate * (1.0 - self._decay)
        if immediate > self._medium_threshold:
            sp.last_active = frame

    # --- periodic decisions ----------------------------------------------------

    def update(self, now: float) -> str | None:
        """Decide the dominant speaker; the new id when it changed, else None."""
        self._advance_all(now)
        dominant = self._current
        if dominant is None:
            self._current = self._nominate()
            return self._current
        d_imm, d_med, d_long = self._scores(self._speakers[dominant])
        c1, c2, c3 = self._c
        best: str | None = None
        best_margin = c2
        for pid, sp in self._speakers.items():
            if pid == dominant:
                continue
            imm, med, long = self._scores(sp)
            margin = med - d_med
            if imm - d_imm > c1 and long - d_long > c3 and _better(margin, pid, best_margin, best):
                best, best_margin = pid, margin
        if best is not None:
            self._current = best
        return best

    def _nominate(self) -> str | None:
        best: str | None = None
        best_key: tuple[float, float, float, int] | None = None
        for pid, sp in self._speakers.items():
            if sp.last_active < 0:
                continue
            imm, med, long = self._scores(sp)
            key = (long, med, imm, sp.last_active)
            if best_key is None or _better(key, pid, best_key, best):
                best, best_key = pid, key
        return best

    def _scores(self, sp: _Speaker) -> tuple[float, float, float]:
        """log speech-activity scores (immediate, medium, long) at the last closed frame."""
        frames, head, window = sp.frames, sp.head, self._window
        immediate = frames[head]
        if sp.last_active < 0 or sp.frame - sp.last_active > window + 1:
            return self._log_imm[immediate], self._log_med[0], self._log_long[0]
        threshold, n2 = self._medium_threshold, self._n2
        active_blocks = 0
        medium = -1
        for block in range(self._n3):
            active = 0
            for i in range(block * n2, (block + 1) * n2):
                if frames[(head - i) % window] > threshold:
                    active += 1
            if medium < 0:
                medium = active
            if active > self._long_threshold:
                active_blocks += 1
        return self._log_imm[immediate], self._log_med[medium], self._log_long[active_blocks]

    def _advance_all(self, now: float) -> None:
        self._drain()
        frame = int(now * self._rate)
        for sp in self._speakers.values():
            if frame > sp.frame >= 0:
                self._advance(sp, frame)

    # --- membership and ranking ------------------------------------------------

    def remove(self, participant_id: str) -> None:
        """Forget a participant; if it was dominant, the next `update` nominates another.

        Its log is dropped unread (a later `log` call starts a new one).
        """
        self._logs.pop(participant_id, None)
        self._speakers.pop(participant_id, None)
        if self._current == participant_id:
            self._current = None

    def loudest(self, n: int, now: float) -> list[str]:
        """Up to `n` participants, most recent speech activity first (deterministic)."""
        self._advance_all(now)
        ranked = sorted(
            self._speakers.items(),
            key=lambda item: (-item[1].loudness, -item[1].last_active, item[0]),
        )
        return [pid for pid, _ in ranked[: max(n, 0)]]


def _better(value: _V, pid: str, best_value: _V, best: str | None) -> bool:
    """Whether `value` beats the best so far; equal values go to the smaller id."""
    return value > best_value or (best is not None and value == best_value and pid < best)
