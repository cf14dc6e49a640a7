import os

import pytest


def pytest_configure(config):
    # the tests that compare runs bitwise need the same thread count in every run: pinned, so that a
    # busy CI machine does not change it mid-run (runtime/threads.py; test_threads.py unpins it)
    os.environ.setdefault("OFAC_THREADS", str(len(os.sched_getaffinity(0))))
    # measured weight layouts (runtime/model/layout.py) go to a cache of the test session's own, not ~/.cache
    if "OFAC_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["OFAC_CACHE_DIR"] = tempfile.mkdtemp(prefix="ofac-test-cache-")


def pytest_addoption(parser):
    parser.addoption("--accept", action="store_true", help="write current output as the new golden files")


@pytest.fixture
def accept(request):
    return request.config.getoption("--accept") or os.environ.get("OFAC_ACCEPT") == "1"
