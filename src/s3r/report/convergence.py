"""The solver's convergence in a fit's report: objective and relative residuals against iterations (fit.json's trace),
or the answer in words where nothing was recorded to draw."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_convergence"]


def plot_convergence(fit, png_path, *, title: str = "", vector: str | None = "svg") -> dict[str, Path]:
    """Objective and relative residuals against iterations, from fit.json's trace (``fit``: a FitOutputs or anything
    with its ``report`` dict); the residuals end at the check that stopped the solve where the trace's last checkpoint is
    earlier (otherwise a converged fit's last drawn residual can sit above the tolerance line)."""
    import matplotlib.pyplot as plt

    from s3r.report.style import save_figure, use_report_style

    use_report_style()
    trace = fit.report.get("trace") or []
    if not trace:  # nothing was recorded to draw: the solver's answer in words, not two empty axes
        return _no_trace_figure(fit.report, png_path, title, vector)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    its = [t["iteration"] for t in trace]
    first = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731
    objective = [first(t["objective"]) for t in trace]
    a.plot(its, objective, marker=".", color="0.2")
    # a log axis only when the values are positive and span a decade: a flat series (the all-zero model's constant
    # objective) has none for matplotlib to label, and a narrow one was labelled "1.006×10⁰" (DLPFC KCNS1)
    if all(v is not None and v > 0 for v in objective) and max(objective) > 10 * min(objective):
        a.set_yscale("log")
    floor = lambda vals: [min(max(float(first(v)), 1e-16), 1e16) for v in vals]  # noqa: E731  (0 has no log; W = 0 gives an unscaled dual residual)
    checks = trace + [c for c in [_final_check(fit.report, trace)] if c]  # the residuals end at the stopping check
    at = [t["iteration"] for t in checks]
    b.semilogy(at, floor(t["primal_residual"] for t in checks), marker=".", label="primal")
    b.semilogy(at, floor(t["dual_residual"] for t in checks), marker=".", label="dual")
    tol = fit.report.get("tol")
    if tol:
        b.axhline(float(tol), color="tab:red", linestyle="--", linewidth=1, label=f"tolerance {float(tol):g}")
    b.legend(frameon=False)
    a.set_xlabel("iteration")
    a.set_ylabel("objective")
    b.set_xlabel("iteration")
    b.set_ylabel("relative residual")
    status = "converged" if fit.report.get("converged") else "NOT converged"
    fig.suptitle(title or f"solver: {status} in {fit.report.get('iterations', '?')} iterations, {fit.report.get('solve_seconds', float('nan')):.2f} s")
    fig.tight_layout()
    return save_figure(fig, png_path, vector=vector)


def _no_trace_figure(report: dict, png_path, title: str, vector: str | None) -> dict[str, Path]:
    """The convergence figure of a fit with no recorded checkpoint: a model certified at its start (every coefficient
    zero, the intercept-only model a tuning chose) or one that converged before the first checkpoint."""
    import matplotlib.pyplot as plt

    from s3r.report.style import save_figure

    its = int(report.get("iterations") or 0)
    status = "converged" if report.get("converged") else "NOT converged"
    if its == 0 and report.get("converged"):
        body = "no iterations: the start already satisfied the optimality conditions"
        if not report.get("selected_features"):
            body += "\n(every coefficient zero, certified without a solve)"
    else:
        body = f"{status} in {its} iterations, before the first recorded checkpoint"
    residuals = [f"{name} residual {float(report[key]):.2g}" for name, key in (("primal", "primal_residual"), ("dual", "dual_residual"))
                 if report.get(key) is not None]
    if residuals:
        body += "\n" + ", ".join(residuals) + (f" (tolerance {float(report['tol']):g})" if report.get("tol") else "")
    fig = plt.figure(figsize=(8.0, 2.2))
    fig.text(0.5, 0.85, title or f"solver: {status} in {its} iterations, {float(report.get('solve_seconds') or 0.0):.2f} s",
             ha="center", va="top", fontsize=10)
    fig.text(0.5, 0.42, body, ha="center", va="center", fontsize=9)
    return save_figure(fig, png_path, vector=vector)


def _final_check(report: dict, trace: list) -> dict | None:
    """The stopping check's residuals as one more point (the trace keeps every 100th iteration), when the report has them."""
    its = report.get("iterations")
    keys = ("primal_residual", "dual_residual")
    if its is None or int(its) <= int(trace[-1]["iteration"]) or any(not isinstance(report.get(k), (int, float)) for k in keys):
        return None
    return {"iteration": int(its), **{k: float(report[k]) for k in keys}}
