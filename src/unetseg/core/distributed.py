"""Corpus inference over several processes started by ``torchrun`` or SLURM ``srun``.

The launcher's environment gives each process its rank and the world size (read through Lightning
Fabric's cluster environments, as training reads them). Inputs are sorted and dealt round-robin, so any
world size covers every input exactly once; the processes meet over ``torch.distributed`` (gloo) to share
one check of the output folder up front and to let rank 0 merge what must be one file at the end.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from unetseg.core.errors import UnetsegError

T = TypeVar("T")


@dataclass
class Group:
    """This process's place among the inference processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """Every ``world``-th item from ``rank``: all items exactly once over the group."""
        return list(items[self.rank::self.world])

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (a barrier too)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def first(self, work: Callable[[], T]) -> T:
        """Run ``work`` on rank 0 while the others wait; an error there is raised on every rank."""
        result, error = None, None
        if self.main:
            try:
                result = work()
            except UnetsegError as e:
                error = str(e)
        error = self.gather(error)[0]
        if error is not None:
            raise UnetsegError(error)
        return result  # type: ignore[return-value]

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def launched_group(timeout_minutes: float = 60 * 24) -> Group:
    """The group the launcher started this process in: ``torchrun`` (RANK, WORLD_SIZE, MASTER_ADDR/PORT) or
    SLURM (SLURM_PROCID, SLURM_NTASKS, the first node of the job); else one process."""
    launched = "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1  # as they detect
    if not launched:  # one process: Lightning (seconds to import) is not needed to say so
        return Group()
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    env: Any = None
    if TorchElasticEnvironment.detect():
        env = TorchElasticEnvironment()
    elif SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        env = SLURMEnvironment()
    if env is None or env.world_size() == 1:
        return Group()
    import torch.distributed as dist

    rank, world = env.global_rank(), env.world_size()
    os.environ.setdefault("MASTER_ADDR", env.main_address)
    os.environ.setdefault("MASTER_PORT", str(env.main_port))
    group = Group(rank, world)
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world,
                                timeout=timedelta(minutes=timeout_minutes))
        atexit.register(group.close)  # gloo's threads must stop before the interpreter does (else abort)
    return group


RUN_DIR_ENV = "UNETSEG_RUN_DIR"  # the run folder rank 0 made, for the processes Lightning starts after it


def is_main_process() -> bool:
    """False in the processes of a multi-process launch that are not global rank 0: children started by
    Lightning (LOCAL_RANK/NODE_RANK), torchrun (RANK) or srun (SLURM_PROCID)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"]) == 0
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def _launch_file(runs_dir: Path) -> Path | None:
    """Where rank 0 of a torchrun or srun launch names its run folder for the other ranks."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    if not job and os.environ.get("SLURM_JOB_ID"):
        job = f"{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
    return runs_dir / f".launch-{job}" if job and job != "none" else None


def announce_run_dir(run_dir: Path) -> None:
    """Rank 0: tell the other processes of this launch which run folder to use."""
    from unetseg.core.fileio import write_text

    os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
    launch = _launch_file(run_dir.parent)
    if launch is not None:
        write_text(launch, str(run_dir.resolve()))


def forget_run_dir(run_dir: Path) -> None:
    """Rank 0, after training: the launch file and the environment variable are no longer needed."""
    os.environ.pop(RUN_DIR_ENV, None)
    launch = _launch_file(run_dir.parent)
    if launch is not None:
        launch.unlink(missing_ok=True)


def shared_run_dir(runs_dir: str | Path, timeout: float = 600.0) -> Path:
    """Another rank: the run folder rank 0 made (waits for it under torchrun or srun)."""
    import time

    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    launch = _launch_file(Path(runs_dir))
    if launch is None:
        raise UnetsegError("a process of rank > 0 without the run folder of rank 0 (start training through "
                           "Lightning, torchrun or srun)")
    deadline = time.monotonic() + timeout
    while not launch.is_file():
        if time.monotonic() > deadline:
            raise UnetsegError(f"{launch}: rank 0 did not name its run folder within {timeout:.0f} s")
        time.sleep(0.5)
    return Path(launch.read_text().strip())
