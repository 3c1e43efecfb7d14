import sys
from pathlib import Path

# Let tests import tests/helpers.py as "helpers" whatever the rootdir.
sys.path.insert(0, str(Path(__file__).parent))


from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """The demo upstream (scripts/demo_upstream.py) on 127.0.0.1; yields its port."""
    from e2e import load_script

    server, thread = load_script("demo_upstream").serve("127.0.0.1", 0)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the demo upstream did not stop"
