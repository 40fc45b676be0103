"""`vigil replay` to a transport: absolute-clock pacing (fake clock), every frame delivered
in order over TCP, the scheduling-error report; argument errors in one line."""
import json
import threading

from host.recording import LINKTYPE_USER1, Writer
from host.recording import replay as replay_mod
from host.transport import TransportClosed, listen

T0_NS = 1_767_225_600_000_000_000


class FakeClock:
    """Time moves when slept, when a send costs time, and by 1 us per reading (a spinning
    wait must see it move, as it does on a real clock)."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        self.now += 1e-6
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def test_schedule_is_absolute_so_slow_sends_do_not_accumulate_drift():
    fake = FakeClock()
    scheduler = replay_mod.Scheduler(1.0, fake.clock, fake.sleep)
    dues = []
    for i in range(100):
        due = scheduler.wait(T0_NS + i * 10_000_000)  # every 10 ms
        dues.append(due)
        fake.now += 0.007 if i != 50 else 0.025  # each send costs 7 ms; one costs 25 ms
        scheduler.sent(due)
    start = dues[0]
    assert all(abs(due - (start + i * 0.010)) < 1e-9 for i, due in enumerate(dues))
    errors_ms = [e * 1000 for e in scheduler.errors_s]
    late = [i for i, e in enumerate(errors_ms) if e > 7.1]
    # The slow send delays the next few frames; they catch up (3 ms a frame) and then every
    # frame is on its original schedule again: lateness does not carry forward.
    assert late == list(range(50, 56))
    assert all(errors_ms[i] > errors_ms[i + 1] for i in range(50, 56))
    report = scheduler.report()
    assert abs(report["p50_ms"] - 7.0) < 0.1 and abs(report["max_ms"] - 25.0) < 0.1


def test_speed_scales_the_schedule_and_max_never_waits():
    fake = FakeClock()
    scheduler = replay_mod.Scheduler(4.0, fake.clock, fake.sleep)
    dues = [scheduler.wait(T0_NS + i * 1_000_000_000) for i in range(3)]
    assert [round(due - dues[0], 9) for due in dues] == [0.0, 0.25, 0.5]
    fast = FakeClock()
    scheduler = replay_mod.Scheduler(float("inf"), fast.clock, fast.sleep)
    for i in range(3):
        scheduler.wait(T0_NS + i * 10**12)
    assert fast.sleeps == []


def _recording(path, n, gap_ns):
    with Writer(str(path), meta={"clock": "wall"}) as writer:
        link = writer.interface("dev5", meta={"device_id": 5})
        stim = writer.interface("stimuli", linktype=LINKTYPE_USER1)
        writer.stimulus(stim, T0_NS, {"device": 5, "kind": "button", "hold_ms": 100})
        for i in range(n):
            writer.frame(link, T0_NS + i * gap_ns, bytes([1 + i % 200, 2, 3]) + b"\x00",
                         "up" if i % 4 else "down")


def _serve(url="tcp://127.0.0.1:0"):
    """A peer that reads every frame, answers frame 7, and closes when the replay does
    (replay's close waits for that: transport/tcp.py). `got` ends with the reason it
    stopped (a string) if that was not the replay's close."""
    listener = listen(url)
    got = []

    def run():
        link = listener.accept(timeout_ms=10000)
        if link is None:
            got.append("no connection within 10 s")
            return
        with link:
            while True:
                try:
                    frame = link.recv(timeout_ms=10000)
                except TransportClosed:
                    return  # the replay closed: everything it sent has been read
                except OSError as e:
                    got.append("recv failed: %s" % e)
                    return
                if frame is None:
                    got.append("nothing for 10 s")
                    return
                got.append(frame)
                if frame[0] == 7:
                    try:
                        link.send(b"\x05\x01\x02\x03\x00")  # something back, to be drained
                    except OSError:
                        pass  # too late for a reply: what arrived still counts
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, got, thread


def test_replay_over_tcp_delivers_every_frame_of_the_direction_in_order(tmp_path, capsys):
    path = tmp_path / "s.pcapng"
    _recording(path, 400, 1_000_000)
    for direction in ("up", "down"):
        listener, got, thread = _serve()
        try:
            code = replay_mod.main([str(path), "--to", listener.url, "--speed", "max",
                                    "--direction", direction, "--json"])
            thread.join(15)
            assert not thread.is_alive()
        finally:
            listener.close()
        assert code == 0
        result = json.loads(capsys.readouterr().out)
        expected = [bytes([1 + i % 200, 2, 3]) + b"\x00" for i in range(400)
                    if (i % 4 != 0) == (direction == "up")]
        assert got == expected
        assert result["sent"] == len(expected)
        assert result["p99_ms"] is None  # max speed schedules nothing


def test_replay_at_1x_takes_the_recorded_time_and_reports_the_error(tmp_path, capsys):
    import time

    path = tmp_path / "s.pcapng"
    _recording(path, 200, 1_000_000)  # 150 up-frames spread over 0.2 s
    listener, got, thread = _serve()
    try:
        started = time.perf_counter()
        assert replay_mod.main([str(path), "--to", listener.url, "--json"]) == 0
        elapsed_s = time.perf_counter() - started
        thread.join(5)
    finally:
        listener.close()
    result = json.loads(capsys.readouterr().out)
    # Never early: the last up-frame is 0.199 s after the first, so the replay takes that
    # long at least, and no frame went out before its time (errors are >= 0). The 2 ms p99
    # target is measured by bench/recording.py: wall-clock figures on a CI machine shared
    # with other jobs say more about the neighbours than about the scheduler.
    assert elapsed_s >= 0.199
    assert result["sent"] == 150 and len(got) == 150
    assert 0 <= result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["received"] == 1  # the reply to frame 6, read while waiting for frame 7
    assert result["realtime"] is False


def test_realtime_priority_is_restored_or_refused_in_one_line(tmp_path, capsys, monkeypatch):
    import os

    path = tmp_path / "s.pcapng"
    _recording(path, 20, 1_000_000)
    before = os.sched_getscheduler(0)
    permitted = True
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, before, os.sched_param(0))
    except OSError:
        permitted = False
    seen = []
    real_set = os.sched_setscheduler

    def replay_realtime():
        """Replay the file with --realtime to a fresh peer: (frames it got, captured output)."""
        listener, got, thread = _serve()
        try:
            assert replay_mod.main([str(path), "--to", listener.url, "--json", "--realtime"]) == 0
            thread.join(5)
        finally:
            listener.close()
        return got, capsys.readouterr()

    def spy(pid, policy, param):
        seen.append(policy)
        return real_set(pid, policy, param)

    monkeypatch.setattr(os, "sched_setscheduler", spy)
    got, captured = replay_realtime()
    result = json.loads(captured.out)
    assert result["realtime"] is permitted and len(got) == 15
    assert os.sched_getscheduler(0) == before  # restored
    if permitted:
        assert seen == [os.SCHED_FIFO, before]
    else:
        assert len(captured.err.strip().splitlines()) == 1 and "--realtime" in captured.err

    def refuse(pid, policy, param):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    got, captured = replay_realtime()
    assert json.loads(captured.out)["realtime"] is False and len(got) == 15
    assert captured.err.strip() == ("vigil replay: --realtime: not permitted here (Operation "
                                    "not permitted); replaying at normal priority")


def test_bad_arguments_are_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "s.pcapng"
    _recording(path, 4, 1000)
    for argv in ([str(path), "--to", "emu://"], [str(path), "--to", "tcp://127.0.0.1:1",
                                                  "--check"],
                 [str(path), "--to", "tcp://127.0.0.1:1"], [str(tmp_path / "none.pcapng"),
                                                            "--to", "tcp://127.0.0.1:1"],
                 [str(path), "--speed", "0"], [str(path), "--speed", "nan"]):
        capsys.readouterr()
        assert replay_mod.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err and "Traceback" not in err, argv


def test_replay_record_keeps_what_was_sent(tmp_path, capsys):
    from host.recording import read_all

    path = tmp_path / "s.pcapng"
    _recording(path, 40, 1000)
    out = tmp_path / "replayed.pcapng"
    listener, got, thread = _serve()
    try:
        assert replay_mod.main([str(path), "--to", listener.url, "--speed", "max",
                                "--record", str(out)]) == 0
        thread.join(5)
    finally:
        listener.close()
    reader, packets = read_all(str(out))
    assert reader.error is None and reader.meta["replay_of"] == str(path)
    # Uplinks were replayed: this side played the devices, so what it sent is "up".
    assert [p.data for p in packets if p.direction == "up"] == got
    assert len(got) == 30
