"""The "ray" worker executor of multi-objective search: each worker is a Ray task running
`multi_objective.optimize_worker` against one Optuna study in a shared storage (PostgreSQL, or an SQLite file every
node can reach).

    run_multi_objective(spec, trials=200, workers=8, executor="ray")    # spec.storage: a URL all workers open

Ray (the `distributed` extra) is imported when the executor runs. An existing cluster is joined when
$RAY_ADDRESS names one (`ray.init()` reads it); otherwise a local Ray instance is started for the search and
stopped after it.
"""
from __future__ import annotations

import os

from hwnas.errors import HwnasError
from hwnas.search.multi_objective import StudySpec, optimize_worker, register_executor


@register_executor("ray")
def ray_executor(spec: StudySpec, trials_per_worker: list[int], storage=None) -> None:
    """One Ray task per worker (one CPU each); returns when all are done. A worker that fails is one line."""
    if spec.storage is None:
        raise HwnasError("Ray workers share the study through its storage: give a storage URL every worker can open "
                         "(sqlite:///FILE on one machine, a PostgreSQL URL on a cluster); an in-memory study cannot "
                         "be shared")
    try:
        import ray
    except ImportError as e:
        raise HwnasError(f"--executor ray needs Ray ({e}); pip install 'hwnas[distributed]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        local = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": min(os.cpu_count() or 1, len(trials_per_worker))}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}, **local)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(optimize_worker)
        ray.get([task.remote(spec, n, w) for w, n in enumerate(trials_per_worker)])
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        if isinstance(cause, HwnasError):
            raise HwnasError(str(cause)) from None
        raise HwnasError(f"a Ray search worker failed: {type(cause).__name__}: {str(cause).splitlines()[0][:200]}") \
            from None
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["ray_executor"]
