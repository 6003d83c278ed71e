"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small problems: a second OpenMP thread only adds wake-up latency (severe on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tuned_fit(root, layout: str, tune_config: dict, *, params: dict | None = None):
    """A simulated sample tuned by s3r.tune (states kept) into root/tune and fitted into root/fit.

    ``params``: fit at these λ, α, β instead of the tuned ones. Returns (simulation, model, best_params).
    """
    from s3r import S3R, tune
    from s3r.io import RegressionData
    from s3r.results import write_fit
    from s3r.simulate import simulate

    sim = simulate(layout, sigma=1.0, seed=0)
    data = RegressionData(sim.X, sim.y, sim.coords, sim.spot_ids, sim.feature_names, "target")
    best = tune.run_search(data, tune_config, root / "tune", keep_states=True)
    chosen = params or {key: best[key] for key in ("lambda_smooth", "alpha", "beta")}
    model = S3R("tv", **chosen).fit(sim.X, sim.y, sim.coords)
    write_fit(root / "fit", model, data)
    return sim, model, best
