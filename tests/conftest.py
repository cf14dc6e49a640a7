import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--accept", action="store_true", help="write current output as the new golden files")


@pytest.fixture
def accept(request):
    return request.config.getoption("--accept") or os.environ.get("OFAC_ACCEPT") == "1"
