"""Per-stream rate: a reply delivered in one burst must not read as thousands of tok/s."""

from __future__ import annotations

from app.bench.load import RequestResult, percentile


def test_burst_delivery_is_not_inflated() -> None:
    # measured on a loaded sim unit: 32 tokens, first after 188 ms, the rest within 28 ms
    burst = RequestResult(ok=True, ttft_s=0.188, total_s=0.216, tokens=32)
    assert 140 < burst.decode_tps < 150


def test_rate_counts_the_whole_request() -> None:
    steady = RequestResult(ok=True, ttft_s=0.4, total_s=3.6, tokens=64)
    assert abs(steady.decode_tps - 64 / 3.6) < 1e-9
    assert RequestResult(ok=False).decode_tps == 0.0


def test_percentile_interpolates() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile([], 0.95) == 0.0
