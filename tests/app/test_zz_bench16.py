import json
import pytest
from app.bench.realtime import run_first_audio, print_realtime
from tests.app.conftest import API_KEY
pytestmark = pytest.mark.slow
async def test_bench(server_service):
    r = await run_first_audio(server_service.url, API_KEY, rounds=9, max_tokens=32)
    print_realtime({"first_audio": r})
    print(json.dumps(r, indent=1))
    open("/tmp/wt16-bench.json", "w").write(json.dumps(r, indent=1))
