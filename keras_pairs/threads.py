"""TensorFlow's thread budget: how many cores one training process asks for, from one setting.

TensorFlow runs two pools, both sized to the machine's cores and both fixed at its first op:
intra-op (one op split over threads) and inter-op (independent ops side by side: an ensemble's
encoders, the augmentation, the metrics); tf.data adds a private pool of its own. Capping only
the intra-op pool leaves about two runnable threads per process on two cores, so two
"single-threaded" Dask workers asked for four cores on two. ``--threads N`` sets both pools to N
(and tf.data's pool where the pipeline is built), in a serial run and on every Dask worker:

* a serial run applies it before TensorFlow's first op (``apply``; None leaves TensorFlow's own,
  every core);
* local Dask workers get it as environment variables before their process starts (``environ``,
  through Dask's ``distributed.nanny.pre-spawn-environ``), and every job checks it (``apply``): a
  worker whose TensorFlow already runs with other numbers fails the job with one line saying so;
* ``check_budget`` refuses local workers x threads beyond the machine's cores.

docs/distributed.md says how to size ``dask worker --nworkers --nthreads`` by hand.
"""

from __future__ import annotations

import os

from .errors import UserError

INTRA, INTER = "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"


class ThreadsFixed(RuntimeError):
    """TensorFlow already runs in this process with other thread counts than the jobs ask for."""


def environ(threads: int) -> dict[str, str]:
    """The environment that makes a new process's TensorFlow use ``threads`` threads per pool."""
    return {INTRA: str(threads), INTER: str(threads)}


def _from_env(name: str) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else 0


def configured() -> dict[str, int]:
    """This process's intra- and inter-op threads: what ``tf.config`` was told, else the
    environment, else 0 (TensorFlow's default: one per core)."""
    import tensorflow as tf

    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or _from_env(INTRA),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or _from_env(INTER)}


def apply(threads: int | None) -> None:
    """Sets both pools to ``threads`` before TensorFlow's first op (None: TensorFlow's default).

    Raises ``ThreadsFixed`` when TensorFlow already runs with other counts (it cannot change them
    then): the process must be started again with them.
    """
    if threads is None:
        return
    import tensorflow as tf

    now = configured()
    if all(value == threads for value in now.values()):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        said = ", ".join(f"{k.split('_')[0]}-op {v or 'default'}" for k, v in now.items())
        raise ThreadsFixed(f"this process's TensorFlow already runs with {said} threads, not {threads}: start it "
                           f"with {INTRA}={threads} {INTER}={threads} (a Dask worker: --nthreads 1 and that "
                           f"environment, docs/distributed.md)") from None


def dataset_options():
    """tf.data options that keep a pipeline inside the budget: its private pool as large as the
    inter-op pool (TensorFlow's own default where none is set), one thread per dataset op."""
    import tensorflow as tf

    options = tf.data.Options()
    inter = configured()["inter_op_threads"]
    if inter:
        options.threading.private_threadpool_size = inter
        options.threading.max_intra_op_parallelism = 1
    return options


def check_budget(workers: int, threads: int, cores: int | None = None) -> None:
    """Refuses local workers whose threads add up to more than the machine's cores."""
    cores = cores or os.cpu_count() or 1
    if workers * threads > cores:
        raise UserError(f"--workers {workers} x --threads {threads} asks for {workers * threads} cores on a machine "
                        f"of {cores}: the workers would slow each other down. Use --workers "
                        f"{max(1, cores // threads)} with --threads {threads}, or --threads {max(1, cores // workers)}")
