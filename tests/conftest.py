"""Fixtures and the collection order shared by the test modules; importable helpers live in helpers.py."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small problems: a second OpenMP thread only adds wake-up latency (severe on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """Modules holding a slow test (workflow runs, SLURM) first, each module's tests kept together and in order:
    pytest-xdist hands whole files to its workers in this order, so the long files start at once instead of
    ending the run on one busy worker while the other idles."""
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)  # stable: the order within each group holds
