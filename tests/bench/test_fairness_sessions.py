"""The pure parts of the fairness and session-count scenarios: the latency summary, the echo
round trips, counting a process's connections from /proc, and targets stated at a load."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from bench.scenarios import fairness

from bench import procs, report, targets

# Two listeners, an established connection to port 9000 (0x2328) and one in TIME_WAIT (06,
# inode 0) to the same port, as /proc/<pid>/net/tcp prints them; and an IPv6 row.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 112 1 0
   2: 0100007F:D431 0100007F:2328 01 00000000:00000000 00:00000000 00000000  1000        0 113 1 0
   3: 0100007F:D432 0100007F:2328 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0
   4: 0100007F:2328 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 114 1 0
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000001000000:D433 00000000000000000000000001000000:2328 01 00000000:00000000 00:00000000 00000000  1000        0 115 1 0
"""  # noqa: E501


def test_latency_summary_takes_nearest_rank_percentiles() -> None:
    samples = [float(n) for n in range(100, 0, -1)]  # 1..100 ms, in no particular order
    assert fairness.latency_summary(samples) == {
        "p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0, "round_trips": 100.0,
    }  # fmt: skip
    # One slow round trip in 1,000 is above p99 but is the max.
    summary = fairness.latency_summary([0.2] * 999 + [40.0], prefix="idle_")
    assert summary["idle_p99_ms"] == 0.2
    assert summary["idle_max_ms"] == 40.0
    assert summary["idle_round_trips"] == 1000
    # Eleven slow ones in 1,000 are p99.
    assert fairness.latency_summary([0.2] * 989 + [7.0] * 11)["p99_ms"] == 7.0
    assert fairness.latency_summary([3.5]) == {
        "p50_ms": 3.5, "p99_ms": 3.5, "max_ms": 3.5, "round_trips": 1.0,
    }  # fmt: skip
    with pytest.raises(ValueError, match="no round trips"):
        fairness.latency_summary([])


@pytest.fixture
def echo_pair() -> Iterator[tuple[socket.socket, list[int]]]:
    """A connected pair whose far end echoes (after a 5 ms pause for each write of at least
    fairness.ECHO_BYTES), and the sizes of the writes it saw."""
    near, far = socket.socketpair()
    seen: list[int] = []

    def echo() -> None:
        with far:
            while data := far.recv(4096):
                seen.append(len(data))
                time.sleep(0.005)
                far.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        yield near, seen
    finally:
        near.close()
        thread.join(5)


def test_echo_round_trips_one_at_a_time(echo_pair: tuple[socket.socket, list[int]]) -> None:
    sock, seen = echo_pair
    deadline = time.monotonic() + 0.2
    samples = fairness.echo_round_trips(sock, lambda: time.monotonic() >= deadline, interval=0.001)
    # Each takes the echo's 5 ms (more than the interval: the next starts at once).
    assert 10 <= len(samples) <= 41, samples
    assert all(4.5 <= ms < 100 for ms in samples), samples
    assert sum(seen) == fairness.ECHO_BYTES * len(samples)  # one request in flight at a time


def test_echo_round_trips_paced_by_the_interval(echo_pair: tuple[socket.socket, list[int]]) -> None:
    sock, _seen = echo_pair
    deadline = time.monotonic() + 0.3
    samples = fairness.echo_round_trips(sock, lambda: time.monotonic() >= deadline, interval=0.05)
    assert 5 <= len(samples) <= 7, samples  # one every 50 ms, though each takes ~5 ms


def test_echo_round_trips_fail_when_the_echo_closes() -> None:
    near, far = socket.socketpair()
    far.close()
    with near, pytest.raises((ConnectionError, OSError)):
        fairness.echo_round_trips(near, lambda: False)


def test_parse_proc_net_tcp_reads_ports_state_and_inode() -> None:
    sockets = procs.parse_proc_net_tcp(PROC_NET_TCP)
    up = procs.ESTABLISHED
    assert sockets[0] == procs.TcpSocket(local_port=9000, remote_port=0, state=0x0A, inode=111)
    assert sockets[2] == procs.TcpSocket(local_port=54321, remote_port=9000, state=up, inode=113)
    assert [s.state for s in sockets] == [0x0A, 0x0A, up, 0x06, up]
    assert procs.parse_proc_net_tcp(PROC_NET_TCP6) == [procs.TcpSocket(54323, 9000, up, 115)]
    assert procs.parse_proc_net_tcp(PROC_NET_TCP.splitlines()[0]) == []  # the header alone


def test_count_established_counts_one_process_s_connections_to_a_port() -> None:
    sockets = procs.parse_proc_net_tcp(PROC_NET_TCP) + procs.parse_proc_net_tcp(PROC_NET_TCP6)
    # The client ends (113, 115) go to 9000; 114 is the server's end of 113, from 9000; the
    # TIME_WAIT row and the listener do not count.
    assert procs.count_established(sockets, {111, 112, 113, 114, 115}, 9000) == 2
    assert procs.count_established(sockets, {113}, 9000) == 1
    assert procs.count_established(sockets, {114}, 9000) == 0  # its remote port is 54321
    assert procs.count_established(sockets, {114}, 54321) == 1
    assert procs.count_established(sockets, {0}, 9000) == 0
    assert procs.count_established(sockets, set(), 9000) == 0


def test_established_to_counts_this_process_s_loopback_connections() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert procs.established_to(os.getpid(), port) == 0
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [server.accept()[0] for _ in clients]
        try:
            assert procs.established_to(os.getpid(), port) == 3
            inodes = procs.socket_inodes(os.getpid())
            assert all(os.fstat(c.fileno()).st_ino in inodes for c in clients)
            clients[0].close()
            assert procs.established_to(os.getpid(), port) == 2
        finally:
            for sock in clients + accepted:
                sock.close()


def _session_entry(connections: float, streams: float) -> dict[str, float]:
    return {
        "streams": streams, "agent_connections_before": 2.0,
        "agent_connections_with_streams": connections, "agent_processes": 4.0,
        "busiest_agent_streams": streams / 4,
    }  # fmt: skip


def _target(evaluated: list[dict[str, object]], prefix: str) -> dict[str, object]:
    (found,) = [item for item in evaluated if str(item["target"]).startswith(prefix)]
    return found


def test_session_count_target_is_exact_and_needs_1000_streams() -> None:
    name = "agent connections to the hub at 1,000 streams"
    met = targets.evaluate({"session_count": {"public/tls": _session_entry(2, 1000)}})
    assert _target(met, name)["met"] is True
    assert _target(met, name)["measured"] == 2.0
    for connections in (1, 3, 1002):
        missed = targets.evaluate(
            {"session_count": {"public/tls": _session_entry(connections, 1000)}}
        )
        assert _target(missed, name)["met"] is False, connections
    # 200 streams (a smoke run) say nothing about the target at 1,000.
    small = targets.evaluate({"session_count": {"public/tls": _session_entry(2, 200)}})
    assert _target(small, name)["measured"] is None
    assert _target(small, name)["met"] is None


def test_fairness_targets_are_p99_limits() -> None:
    results: targets.Results = {"fairness": {
        "mux/tls": {"p99_ms": 1.2, "idle_p99_ms": 0.3},
        "public/tls": {"p99_ms": 8.0, "idle_p99_ms": 0.6},
    }}  # fmt: skip
    evaluated = targets.evaluate(results)
    mux = _target(evaluated, "echo p99 beside a bulk stream, same session, mux/tls")
    public = _target(evaluated, "echo p99 beside a bulk stream, public")
    assert (mux["measured"], mux["met"]) == (1.2, True)
    assert (public["measured"], public["met"]) == (8.0, False)
    table = targets.targets_table(evaluated)
    assert "| echo p99 beside a bulk stream, public <= 5 ms | 8.00 | **no** |" in table


def test_report_shows_both_scenarios() -> None:
    results: targets.Results = {
        "fairness": {"mux/tls": {"p99_ms": 1.25, "idle_p99_ms": 0.31}},
        "session_count": {"public/tls": _session_entry(2, 1000)},
    }
    shown = report.table(results, ["mux/tls", "public/tls"])
    assert "| echo p99 beside a bulk stream | mux/tls | 1.25 ms |" in shown
    assert "| echo p99, no bulk | mux/tls | 0.31 ms |" in shown
    assert ("| agent connections to the hub (1,000 streams) | public/tls | 2 / 2 "
            "(1,000 streams, busiest of 4 agents 250) |") in shown  # fmt: skip
    summary = report.summary(results, ["mux/tls", "public/tls"])
    assert "| echo p99 beside a bulk stream (ms) | 1.25 |" in summary
    assert "| agent connections to the hub, idle / with streams | 2 / 2 (1,000" in summary
