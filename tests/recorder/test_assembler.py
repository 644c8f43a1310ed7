"""FrameAssembler (sans I/O): complete frames in order, whatever order the packets came in."""

from __future__ import annotations

import random

from tonglu.recorder.assembler import FrameAssembler


def _frames(n_frames: int, sizes: list[int], first_seq: int = 1000) -> list[tuple[int, int, bool, bytes, bool]]:
    """(seq, ts, marker, data, start) for n frames; frame i has sizes[i % len] packets."""
    out = []
    seq = first_seq
    for i in range(n_frames):
        k = sizes[i % len(sizes)]
        for j in range(k):
            out.append((seq, 3000 * i, j == k - 1, bytes([i % 256, j % 256]), j == 0))
            seq += 1
    return out


def _expected(packets: list[tuple[int, int, bool, bytes, bool]]) -> list[tuple[int, bytes]]:
    frames: dict[int, bytes] = {}
    for _, ts, _, data, _ in packets:
        frames[ts] = frames.get(ts, b"") + data
    return sorted(frames.items())


def test_in_order_frames_come_out_whole_including_a_long_keyframe() -> None:
    pkts = _frames(30, [120, 6, 7, 5])
    a = FrameAssembler()
    out = []
    for seq, ts, m, d, st in pkts:
        out += a.add(seq, ts, m, d, st)
    assert out == _expected(pkts)
    assert a.buffered == 0


def test_reordered_and_duplicated_packets_give_the_same_frames() -> None:
    pkts = _frames(40, [90, 8, 3, 11])
    rng = random.Random(7)
    shuffled = list(pkts)
    for i in range(1, len(shuffled) - 6, 3):  # local reordering, as a network does (the first packet starts)
        window = shuffled[i : i + 6]
        rng.shuffle(window)
        shuffled[i : i + 6] = window
    shuffled += rng.sample(pkts, 20)  # late duplicates
    a = FrameAssembler()
    out = []
    for seq, ts, m, d, st in shuffled:
        out += a.add(seq, ts, m, d, st)
    assert out == _expected(pkts)


def test_a_hole_given_up_resumes_at_the_next_frame_start() -> None:
    pkts = _frames(6, [5])
    lost = 12  # inside frame 2
    a = FrameAssembler()
    out = []
    for seq, ts, m, d, st in pkts:
        if seq != 1000 + lost:
            out += a.add(seq, ts, m, d, st)
    assert [ts for ts, _ in out] == [0, 3000]  # frame 2 waits for its hole; later frames wait behind it
    out += a.skip_to(1000 + lost + 1)
    assert [ts for ts, _ in out] == [0, 3000, 9000, 12000, 15000]  # frame 2 dropped, the rest complete
    assert a.skipped_packets == 3  # the two received packets of frame 2 and the lost one
