"""8 realtime sessions talking at once against one service (the short version of
`voicefleet bench --realtime-only --realtime-soak 60`): no errors, memory bounded."""

from __future__ import annotations

import pytest

from app.bench.realtime import run_soak
from tests.app.conftest import API_KEY, Service

pytestmark = pytest.mark.slow


async def test_eight_sessions_for_ten_seconds(server_service: Service) -> None:
    report = await run_soak(server_service.url, API_KEY, sessions=8, seconds=10)
    print(f"\nsoak: {report}")
    assert report["errors"] == 0, report["error_samples"]
    assert report["turns"] >= 8
    # the service is this test process: models loaded already, so growth is the sessions'
    assert report["rss_peak_mib"] - report["rss_start_mib"] < 400, report
