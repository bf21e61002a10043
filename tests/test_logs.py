"""json-file logs: format exactness, chunking, rotation, recovery states, the reader."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from tests.test_logs_helpers import all_entries, feed, go_escape, join_messages, log_files
from tuibox.engine.errors import InvalidArgument
from tuibox.engine.logs import (
    LogEntry,
    LogWriter,
    decode_line,
    encode_entry,
    format_time,
    parse_since,
    read_logs,
)
from tuibox.engine.logs.chunks import convertible, messages
from tuibox.engine.logs.cursor import Cursor, CursorFile
from tuibox.engine.logs.jsonfmt import CHUNK_SIZE, encode_lines

T = 1714566896123456789  # 2024-05-01T12:34:56.123456789Z
CID = "c0ffee"


class FakeClock:
    def __init__(self, start: int = T) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    cdir = tmp_path / "containers" / CID
    cdir.mkdir(parents=True)
    return cdir, tmp_path / "spool"


# -- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t_ns", "text"),
    [
        (T, "2024-05-01T12:34:56.123456789Z"),
        (1714566896_000000000, "2024-05-01T12:34:56Z"),
        (1714566896_100000000, "2024-05-01T12:34:56.1Z"),
        (1714566896_000000001, "2024-05-01T12:34:56.000000001Z"),
        (1714566896_120000000, "2024-05-01T12:34:56.12Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_format_time_is_go_rfc3339nano(t_ns: int, text: str) -> None:
    assert format_time(t_ns) == text
    assert decode_line(encode_entry(b"x\n", "stdout", t_ns)).time_ns == t_ns


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"hello\n", rb"hello\n"),
        (b"", b""),
        (b"\n", rb"\n"),
        (b'say "hi"', rb"say \"hi\""),
        (b"back\\slash", rb"back\\slash"),
        (b"<a href='x'>&amp;</a>", rb"\u003ca href='x'\u003e\u0026amp;\u003c/a\u003e"),
        (b"tab\there\r\n", rb"tab\u0009here\r\n"),
        (b"\x00\x01\x1b[31m\x1f\x7f", rb"\u0000\u0001\u001b[31m\u001f" + b"\x7f"),
        ("line\u2028sep\u2029".encode(), rb"line\u2028sep\u2029"),
        ("\u00e9 \u4e16\u754c \U0001f600".encode(), "\u00e9 \u4e16\u754c \U0001f600".encode()),
        (b"bad \xff \xc3(", rb"bad \ufffd \ufffd("),
        (b"\xe2\x82", rb"\ufffd\ufffd"),  # truncated sequence: one U+FFFD per byte, as Go
        (b"\xed\xa0\x80", rb"\ufffd\ufffd\ufffd"),  # an encoded surrogate is invalid
        (b"\xc0\xaf", rb"\ufffd\ufffd"),  # overlong
        (b"\xef\xbf\xbd", b"\xef\xbf\xbd"),  # a real U+FFFD is kept as it is
    ],
)
def test_escaping_matches_moby(raw: bytes, escaped: bytes) -> None:
    entry = encode_entry(raw, "stdout", T)
    assert entry == b'{"log":"' + escaped + b'","stream":"stdout","time":"' + (
        b'2024-05-01T12:34:56.123456789Z"}\n'
    )
    assert go_escape(raw) == escaped


def test_escaping_fuzz_against_a_port_of_the_go_loop() -> None:
    rng = random.Random(7)
    alphabet = [bytes([b]) for b in range(256)] + [
        "\u2028".encode(), "\u00e9".encode(), "\U0001f600".encode(), b"\xe2\x80", b"\xf0\x9f",
        b"\xed\xa0\x80", b"\xef\xbf\xbd", b"\n", b"a", b"<", b"\\",
    ]
    for _ in range(3000):
        raw = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        assert encode_entry(raw, "stderr", T) == (
            b'{"log":"' + go_escape(raw) + b'","stream":"stderr","time":"'
            + format_time(T).encode() + b'"}\n'
        ), raw


def test_batch_encoding_equals_entry_by_entry() -> None:
    rng = random.Random(3)
    for _ in range(300):
        lines = [
            bytes(rng.choice(b"ab<\"\\\t\xff\xe2\x80\xa8 ") for _ in range(rng.randrange(0, 30)))
            + b"\n"
            for _ in range(rng.randrange(1, 8))
        ]
        expected = b"".join(encode_entry(line, "stdout", T) for line in lines)
        assert encode_lines(b"".join(lines), "stdout", T) == expected


def test_decode_line_round_trip_and_foreign_times() -> None:
    e = decode_line(encode_entry(b"part", "stderr", T))
    assert e == LogEntry("stderr", T, b"part", True)
    line = b'{"log":"x\\n","stream":"stdout","time":"2024-05-01T14:34:56.5+02:00"}'
    assert decode_line(line).time_ns == 1714566896_500000000
    line = b'{"log":"x\\n","stream":"stdout","time":"2024-05-01T12:34:56.1234567891Z"}'
    assert decode_line(line).time_ns == 1714566896_123456789  # sub-ns digits dropped
    for bad in (b"", b"{", b"[]", b'{"log":"x","stream":"stdout","time":"yesterday"}'):
        with pytest.raises(ValueError):
            decode_line(bad)


# -- chunking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "pieces"),
    [
        (CHUNK_SIZE - 1, [CHUNK_SIZE]),  # 16383 bytes + "\n" fits the copier's buffer
        (CHUNK_SIZE, [CHUNK_SIZE, 1]),  # a full buffer without "\n": partial, then "\n"
        (CHUNK_SIZE + 1, [CHUNK_SIZE, 2]),
        (3 * CHUNK_SIZE + 5, [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 6]),
    ],
)
def test_long_lines_become_16k_partials(length: int, pieces: list[int]) -> None:
    line = b"x" * length + b"\n"
    assert [len(m) for m in messages(line)] == pieces
    assert all(not m.endswith(b"\n") for m in messages(line)[:-1])


def test_conversion_is_the_same_in_any_number_of_steps() -> None:
    rng = random.Random(11)
    data = b"".join(
        b"y" * rng.choice([0, 3, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE * 2 + 7]) + b"\n"
        for _ in range(20)
    ) + b"tail without newline"
    whole = messages(data)
    stepped: list[bytes] = []
    pending, pos = b"", 0
    while pos < len(data):
        step = rng.randrange(1, 40000)
        pending += data[pos : pos + step]
        pos += step
        count, _ = convertible(pending, final=pos >= len(data))
        stepped += messages(pending[:count])
        pending = pending[count:]
    assert stepped == whole
    assert whole[-1] == b"tail without newline"


def test_simple_means_all_lines_short() -> None:
    rng = random.Random(12)
    for _ in range(500):
        lens = [rng.choice([0, 5, CHUNK_SIZE - 2, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 3])
                for _ in range(rng.randrange(1, 5))]
        data = b"".join(b"z" * n + b"\n" for n in lens)
        count, simple = convertible(data, final=False)
        assert count == len(data)
        assert simple == (max(lens) < CHUNK_SIZE)
        if simple:
            assert messages(data) == [b"z" * n + b"\n" for n in lens]


# -- writer ---------------------------------------------------------------------------------


def test_writer_basic_and_on_entry(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    seen: list[tuple[str, bytes]] = []
    w = LogWriter(cdir, CID, spool, on_entry=lambda s, b: seen.append((s, b)), clock=FakeClock())
    w.recover()
    assert w.path == cdir / f"{CID}-json.log"
    assert (os.stat(w.path).st_mode & 0o777) == 0o640
    feed(w, "stdout", b"hello\nwor")
    feed(w, "stderr", b"oops\n")
    feed(w, "stdout", b"ld\n\nlast", eof=True)
    feed(w, "stderr", b"", eof=True)
    ts = b'"time":"2024-05-01T12:34:56.123456789Z"}\n'
    assert w.path.read_bytes() == (
        b'{"log":"hello\\n","stream":"stdout",' + ts
        + b'{"log":"oops\\n","stream":"stderr",' + ts
        + b'{"log":"world\\n","stream":"stdout",' + ts
        + b'{"log":"\\n","stream":"stdout",' + ts
        + b'{"log":"last","stream":"stdout",' + ts
    )
    assert seen == [
        ("stdout", b"hello\n"), ("stderr", b"oops\n"), ("stdout", b"world\n\n"),
        ("stdout", b"last"),
    ]
    w.remove_spool()
    assert list(spool.iterdir()) == []


def test_writer_long_line_and_its_spool(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool, clock=FakeClock())
    big = bytes(random.Random(1).choice(b"abc\xff<") for _ in range(40000))
    feed(w, "stdout", big)  # no newline yet: two full chunks are out, the rest waits
    entries = all_entries(cdir, CID)
    assert [len(e.data) for e in entries] == [CHUNK_SIZE, CHUNK_SIZE]
    assert all(e.partial for e in entries)
    assert os.path.getsize(spool / f"{CID}.stdout.spool") > 0
    feed(w, "stdout", b"\n")
    assert os.path.getsize(spool / f"{CID}.stdout.spool") == 0  # emptied once all converted
    assert _committed(spool).log_size == w.path.stat().st_size
    chunks = [big[:CHUNK_SIZE], big[CHUNK_SIZE : 2 * CHUNK_SIZE], big[2 * CHUNK_SIZE :] + b"\n"]
    assert w.path.read_bytes() == b"".join(encode_entry(c, "stdout", T) for c in chunks)
    w.close()


def test_spool_with_a_line_always_open_is_hole_punched(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool)
    for i in range(40):  # every pump ends mid-line, so the spool is never empty
        feed(w, "stdout", b"%d-end\n" % i + b"z" * (100_000 + i) + b"\n" + b"start of next")
    st = os.stat(spool / f"{CID}.stdout.spool")
    assert st.st_size > 4_000_000
    assert st.st_blocks * 512 < 2_500_000  # the converted part was given back
    feed(w, "stdout", b"\n", eof=True)
    assert os.path.getsize(spool / f"{CID}.stdout.spool") == 0
    w.close()
    msgs = join_messages(all_entries(cdir, CID), "stdout")
    assert msgs[0] == b"0-end\n" and msgs[-1] == b"start of next\n" and len(msgs) == 81


def test_timestamps_never_go_backwards(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    clock = FakeClock()
    w = LogWriter(cdir, CID, spool, clock=clock)
    feed(w, "stdout", b"a\n")
    clock.now -= 5_000_000_000  # the wall clock steps back
    feed(w, "stdout", b"b\n")
    w.close()
    w2 = LogWriter(cdir, CID, spool, clock=clock)  # and a restarted writer remembers
    feed(w2, "stdout", b"c\n")
    w2.close()
    assert [e.time_ns for e in all_entries(cdir, CID)] == [T, T, T]


def _rotation_run(dirs: tuple[Path, Path], max_file: int, lines: int) -> list[int]:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool, max_size=1000, max_file=max_file, clock=FakeClock())
    for i in range(lines):
        feed(w, "stdout", b"%d\n" % i)
    w.close()
    files = log_files(cdir, CID)
    assert len(files) <= max_file
    for path in files[:-1]:
        body = path.read_bytes()
        last = body.splitlines(keepends=True)[-1]
        # Docker checks before each write: a rotated file reached max-size only with its last
        # entry.
        assert len(body) >= 1000 > len(body) - len(last)
    return [int(m) for m in join_messages(all_entries(cdir, CID), "stdout")]


def test_rotation_max_file_1(dirs: tuple[Path, Path]) -> None:
    kept = _rotation_run(dirs, 1, 60)
    assert kept == list(range(60 - len(kept), 60)) and 0 < len(kept) < 60
    assert [p.name for p in log_files(dirs[0], CID)] == [f"{CID}-json.log"]


def test_rotation_max_file_3(dirs: tuple[Path, Path]) -> None:
    kept = _rotation_run(dirs, 3, 100)
    assert kept == list(range(100 - len(kept), 100))
    names = [p.name for p in log_files(dirs[0], CID)]
    assert names == [f"{CID}-json.log.2", f"{CID}-json.log.1", f"{CID}-json.log"]


def test_rotation_in_one_big_batch_is_exact(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool, max_size=1000, max_file=50, clock=FakeClock())
    feed(w, "stdout", b"".join(b"%d\n" % i for i in range(300)))
    w.close()
    assert [int(m) for m in join_messages(all_entries(cdir, CID), "stdout")] == list(range(300))
    assert all(p.stat().st_size < 1100 for p in log_files(cdir, CID))


def test_bad_rotation_options(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidArgument):
        LogWriter(dirs[0], CID, dirs[1], max_size=0)
    with pytest.raises(InvalidArgument):
        LogWriter(dirs[0], CID, dirs[1], max_file=0)


# -- recovery from each state a killed writer can leave ------------------------------------


def _committed(spool: Path) -> Cursor:
    return Cursor.unpack((spool / f"{CID}.cursor").read_bytes(), spool)


def test_recover_drops_an_uncommitted_append(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool, clock=FakeClock())
    feed(w, "stdout", b"one\n")
    w.close()
    size = w.path.stat().st_size
    with open(w.path, "ab") as f:  # an append whose cursor never landed, torn mid-entry
        f.write(b'{"log":"two\\n","stre')
    with open(spool / f"{CID}.stdout.spool", "ab") as f:  # ... of bytes spliced, unconverted
        f.write(b"two\n")
    w = LogWriter(cdir, CID, spool, clock=FakeClock())
    w.recover()
    w.close()
    assert [e.data for e in all_entries(cdir, CID)] == [b"one\n", b"two\n"]
    assert w.path.stat().st_size == 2 * size


def test_recover_after_spool_truncated_before_commit(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    spool.mkdir()
    CursorFile.create(spool / f"{CID}.cursor", Cursor(stdout_offset=100)).close()
    w = LogWriter(cdir, CID, spool, clock=FakeClock())
    w.recover()  # the spool is empty (size 0 < offset 100): it was emptied, offset is 0
    feed(w, "stdout", b"fresh\n")
    w.close()
    assert [e.data for e in all_entries(cdir, CID)] == [b"fresh\n"]
    assert _committed(spool).stdout_offset == 0


def test_recover_without_cursor_keeps_whole_entries(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    live = cdir / f"{CID}-json.log"
    live.write_bytes(encode_entry(b"old\n", "stdout", T) + b'{"log":"to')  # torn by a crash
    w = LogWriter(cdir, CID, spool, clock=FakeClock(T - 10))
    feed(w, "stdout", b"new\n")
    w.close()
    entries = all_entries(cdir, CID)
    assert [e.data for e in entries] == [b"old\n", b"new\n"]
    assert entries[1].time_ns == T  # not before the entry already there


def test_recover_finishes_a_rotation_killed_between_link_and_rename(
    dirs: tuple[Path, Path],
) -> None:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool, max_size=10, max_file=3, clock=FakeClock())
    feed(w, "stdout", b"a\n")
    w.close()
    os.link(w.path, cdir / f"{CID}-json.log.1")  # the link happened, the new file did not
    w = LogWriter(cdir, CID, spool, max_size=10, max_file=3, clock=FakeClock())
    feed(w, "stdout", b"b\n")
    w.close()
    assert [p.name for p in log_files(cdir, CID)] == [f"{CID}-json.log.1", f"{CID}-json.log"]
    assert [e.data for e in all_entries(cdir, CID)] == [b"a\n", b"b\n"]


def test_recover_finishes_a_rotation_killed_inside_the_shift(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool, max_size=10, max_file=4, clock=FakeClock())
    for x in (b"a\n", b"b\n", b"c\n"):
        feed(w, "stdout", x)
    w.close()
    live = cdir / f"{CID}-json.log"
    # Rotation before "d": .3 would be dropped (none), .2 → .3 done, .1 → .2 not yet.
    os.rename(live.with_name(live.name + ".2"), live.with_name(live.name + ".3"))
    w = LogWriter(cdir, CID, spool, max_size=10, max_file=4, clock=FakeClock())
    feed(w, "stdout", b"d\n")
    w.close()
    assert [e.data for e in all_entries(cdir, CID)] == [b"a\n", b"b\n", b"c\n", b"d\n"]
    assert len(log_files(cdir, CID)) == 4


def test_recover_after_rotation_before_its_commit(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    w = LogWriter(cdir, CID, spool, max_size=10, max_file=2, clock=FakeClock())
    feed(w, "stdout", b"a\n")
    w.close()
    live = cdir / f"{CID}-json.log"
    os.link(live, live.with_name(live.name + ".1"))
    live.unlink()
    live.write_bytes(b"")  # new live file in place, cursor still says the old size
    w = LogWriter(cdir, CID, spool, max_size=10, max_file=2, clock=FakeClock())
    feed(w, "stdout", b"b\n")
    w.close()
    assert [e.data for e in all_entries(cdir, CID)] == [b"a\n", b"b\n"]


# -- reader ---------------------------------------------------------------------------------


def _write_numbers(dirs: tuple[Path, Path], n: int, **kw: int) -> None:
    clock = FakeClock(T)
    w = LogWriter(dirs[0], CID, dirs[1], clock=clock, **kw)
    for i in range(n):
        clock.now = T + i * 1_000_000_000
        feed(w, "stdout" if i % 3 else "stderr", b"%d\n" % i)
    w.close()


def _numbers(entries: object) -> list[int]:
    return [int(e.data) for e in entries]  # type: ignore[attr-defined]


def test_read_all_across_rotated_files(dirs: tuple[Path, Path]) -> None:
    _write_numbers(dirs, 200, max_size=2000, max_file=100)
    assert len(log_files(dirs[0], CID)) > 5
    assert _numbers(read_logs(dirs[0], CID)) == list(range(200))
    assert list(read_logs(dirs[0], "nonexistent")) == []


@pytest.mark.parametrize("tail", [0, 1, 5, 37, 199, 200, 500])
def test_tail_across_rotated_files(dirs: tuple[Path, Path], tail: int) -> None:
    _write_numbers(dirs, 200, max_size=2000, max_file=100)
    assert _numbers(read_logs(dirs[0], CID, tail=tail)) == list(range(200))[200 - min(tail, 200):]
    assert _numbers(read_logs(dirs[0], CID, tail=-1)) == list(range(200))


def test_tail_reads_backwards_only(dirs: tuple[Path, Path]) -> None:
    cdir, spool = dirs
    clock = FakeClock()
    w = LogWriter(cdir, CID, spool, clock=clock)
    feed(w, "stdout", b"".join(b"line %d\n" % i for i in range(200_000)))
    feed(w, "stdout", b"the end\n")
    w.close()
    start = time.perf_counter()
    got = list(read_logs(cdir, CID, tail=2))
    elapsed = time.perf_counter() - start
    assert [e.data for e in got] == [b"line 199999\n", b"the end\n"]
    assert elapsed < 0.2, elapsed  # a full parse of ~16 MB takes seconds


def test_since_until(dirs: tuple[Path, Path]) -> None:
    _write_numbers(dirs, 50, max_size=500, max_file=100)
    s = T + 10 * 1_000_000_000
    u = T + 20 * 1_000_000_000
    assert _numbers(read_logs(dirs[0], CID, since_ns=s)) == list(range(10, 50))
    assert _numbers(read_logs(dirs[0], CID, until_ns=u)) == list(range(21))
    assert _numbers(read_logs(dirs[0], CID, since_ns=s, until_ns=u)) == list(range(10, 21))
    assert _numbers(read_logs(dirs[0], CID, tail=5, since_ns=s)) == list(range(45, 50))


def _follow_run(dirs: tuple[Path, Path], n: int, handshake: bool, **kw: int) -> list[float]:
    """Write ``n`` numbers in a thread while following; returns write-to-read latencies."""
    cdir, spool = dirs
    stop = threading.Event()
    got: list[int] = []
    sent: dict[int, float] = {}
    lags: list[float] = []
    caught_up = threading.Event()

    def produce() -> None:
        w = LogWriter(cdir, CID, spool, **kw)
        for i in range(n):
            sent[i] = time.monotonic()
            feed(w, "stdout", b"%d\n" % i)
            if handshake:
                assert caught_up.wait(5)
                caught_up.clear()
            elif i % 50 == 0:
                time.sleep(0.002)
        w.close()
        stop.set()

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        for e in read_logs(cdir, CID, follow=True, stopped=stop.is_set, poll_interval=0.02):
            got.append(int(e.data))
            lags.append(time.monotonic() - sent[got[-1]])
            caught_up.set()
    finally:
        thread.join()
    assert got == list(range(n))
    return lags


def test_follow_with_rotation_loses_nothing(dirs: tuple[Path, Path]) -> None:
    _follow_run(dirs, 2000, False, max_size=3000, max_file=1000)
    assert len(log_files(dirs[0], CID)) > 20


def test_follow_with_max_file_1_replacement(dirs: tuple[Path, Path]) -> None:
    lags = _follow_run(dirs, 200, True, max_size=300, max_file=1)
    lags.sort()
    assert lags[len(lags) // 2] < 0.01  # inotify: a wake-up, not a poll
    assert lags[len(lags) * 95 // 100] < 0.05


def test_follow_waits_for_the_log_to_appear_and_ends_when_stopped(
    dirs: tuple[Path, Path],
) -> None:
    cdir, spool = dirs
    stop = threading.Event()

    def later() -> None:
        time.sleep(0.1)
        w = LogWriter(cdir, CID, spool)
        feed(w, "stderr", b"late\n", eof=True)
        w.close()
        stop.set()

    thread = threading.Thread(target=later)
    thread.start()
    got = list(read_logs(cdir, CID, follow=True, tail=0, stopped=stop.is_set))
    thread.join()
    assert [(e.stream, e.data) for e in got] == [("stderr", b"late\n")]


def test_follow_ends_when_until_passes(dirs: tuple[Path, Path]) -> None:
    _write_numbers(dirs, 3)
    start = time.monotonic()
    got = list(read_logs(dirs[0], CID, follow=True, until_ns=time.time_ns() + 100_000_000))
    assert _numbers(got) == [0, 1, 2]  # written with 2024 times, long before "until"
    assert time.monotonic() - start < 1


# -- --since / --until values ---------------------------------------------------------------

NOW = 1_700_000_000 * 1_000_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10m", NOW - 600 * 10**9),
        ("1h30m", NOW - 5400 * 10**9),
        ("42s", NOW - 42 * 10**9),
        ("1.5h", NOW - 5400 * 10**9),
        ("300ms", NOW - 300 * 10**6),
        ("2h45m3.5s", NOW - (2 * 3600 + 45 * 60 + 3) * 10**9 - 5 * 10**8),
        ("-5m", NOW + 300 * 10**9),
        ("0", 0),
        ("1700000000", 1_700_000_000 * 10**9),
        ("1700000000.5", 1_700_000_000 * 10**9 + 5 * 10**8),
        ("1700000000.000000001", 1_700_000_000 * 10**9 + 1),
        ("2024-05-01T12:34:56Z", 1714566896 * 10**9),
        ("2024-05-01T12:34:56.123456789Z", T),
        ("2024-05-01T14:34:56.5+02:00", 1714566896_500000000),
        ("2024-05-01T12:34:56-00:30", 1714566896 * 10**9 + 1800 * 10**9),
        ("2024-05-01Z", 1714521600 * 10**9),
    ],
)
def test_parse_since(value: str, expected: int) -> None:
    assert parse_since(value, NOW) == expected


def test_parse_since_local_time_without_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert parse_since("2024-05-01T12:34:56", NOW) == 1714566896 * 10**9
        assert parse_since("2024-05-01T12:34", NOW) == 1714566840 * 10**9
        assert parse_since("2024-05-01", NOW) == 1714521600 * 10**9
        assert parse_since("2024-05-01T12:34:56.25", NOW) == 1714566896_250000000
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("value", ["", "yesterday", "10x", "1h-5m", "2024-13-01", "12:00", "1e9",
                                   "2024-02-30T00:00:00Z", "."])
def test_parse_since_rejects(value: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid time value"):
        parse_since(value, NOW)
