import os

import pytest


def pytest_configure(config):
    # measured weight layouts (runtime/model.py) go to a cache of the test session's own, not ~/.cache
    if "OFAC_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["OFAC_CACHE_DIR"] = tempfile.mkdtemp(prefix="ofac-test-cache-")


def pytest_addoption(parser):
    parser.addoption("--accept", action="store_true", help="write current output as the new golden files")


@pytest.fixture
def accept(request):
    return request.config.getoption("--accept") or os.environ.get("OFAC_ACCEPT") == "1"
