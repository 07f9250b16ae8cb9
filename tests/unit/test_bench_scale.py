"""bench/scale.py's parts that are plain logic, and the tool server it runs (a real one, on loopback)."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.scale import SERVICE_ADDRESS, Network, steady_rate
from tests.support.host import ROOT, free_port


def test_the_steady_rate_is_taken_between_the_samples_inside_the_window():
    samples = [(0.0, 0), (1.0, 5), (2.0, 25), (3.0, 45), (4.0, 65), (5.0, 70)]
    assert steady_rate(samples, 2.0, 4.0) == 20.0  # the ramp and the tail are left out
    assert steady_rate(samples, 1.5, 1.9) == 0.0  # no two samples inside: no rate, rather than a guess


def test_each_host_is_a_namespace_with_its_own_address_on_the_services_bridge():
    cmds = [" ".join(c) for c in Network(2).commands()]
    assert f"ip addr add {SERVICE_ADDRESS}/24 dev sntai0" in cmds
    for host, address in ((1, "10.77.0.11"), (2, "10.77.0.12")):
        assert f"ip netns add sentinai-h{host}" in cmds
        assert f"ip -n sentinai-h{host} addr add {address}/24 dev eth0" in cmds
        assert f"ip link set sntai-h{host} master sntai0 up" in cmds
    assert Network(2).prefix(None) == [] and Network(2).prefix(2) == ["ip", "netns", "exec", "sentinai-h2"]


def test_the_tool_server_answers_after_its_delay_and_counts_second_attempts():
    port = free_port()
    server = subprocess.Popen([sys.executable, "bench/toolserver.py", "--port", str(port), "--delay", "0.2"], cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/stats", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the tool server did not start"
                time.sleep(0.1)

        def call(key: str) -> float:
            t0 = time.monotonic()
            response = httpx.post(f"{base}/retry", json={"a": 1}, headers={"Idempotency-Key": key}, timeout=5)
            assert response.status_code == 200 and response.json() == {"ok": True}
            return time.monotonic() - t0

        t0 = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            took = list(pool.map(call, [f"k{n % 8}" for n in range(10)]))  # two keys called twice
        assert min(took) >= 0.2
        assert time.monotonic() - t0 < 1.5  # ten calls waited together, not one after another
        stats = httpx.get(f"{base}/stats", timeout=5).json()
        assert stats["requests"] == 10 and stats["idempotency_keys"] == 8 and stats["paths"] == {"/retry": 10}
        assert stats["clients"] == {"127.0.0.1": 10}
        assert stats["max_in_flight"] >= 5
    finally:
        server.terminate()
        server.wait(timeout=10)
