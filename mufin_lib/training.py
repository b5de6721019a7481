"""What the two training loops (Module I, Module IV) share: device and distributed set-up, the optimizer with
its warm-up schedule, one update step, and checkpoints that a resumed run can trust."""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from .paths import atomic_path, atomic_write


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> None:
    """Under torchrun (WORLD_SIZE > 1): one process group; NCCL when every rank has a GPU, else gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def finish_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def autocast(dev: torch.device, on: bool):
    """bfloat16 autocast of a training step's forward pass where asked and on a GPU (a CPU trains in float32: its
    bfloat16 kernels are slower there); bfloat16 needs no loss scaling."""
    import contextlib

    return torch.autocast("cuda", dtype=torch.bfloat16) if on and dev.type == "cuda" else contextlib.nullcontext()


def lr_lambda(schedule: str, warmup: int, total: int):
    """Linear warm-up over `warmup` steps, then cosine (paper) or linear (authors' code) decay to 0 at `total`."""
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t))) if schedule == "cosine" else max(0.0, 1 - t)
    return f


def optimizer(groups: list[dict], params, total_steps: int):
    """AdamW over parameter groups (each with its own lr) and the warm-up schedule of `params`
    (any Params with weight_decay, schedule and warmup_steps)."""
    opt = torch.optim.AdamW(groups, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(params.schedule, params.warmup_steps, total_steps))
    return opt, sched


def optimizer_step(loss, opt, sched, parameters, clip: float) -> float:
    """One update, shared by Modules I and IV: backward, clip, step, schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip)
    opt.step()
    sched.step()
    return loss.item()


def save_checkpoint(path: Path, **state) -> None:
    with atomic_path(path) as tmp:  # a killed run never leaves a half-written checkpoint
        torch.save(state, tmp)


def read_checkpoint(path: Path, map_location="cpu", log=print) -> dict | None:
    """The checkpoint at `path`, or None when there is none or it cannot be read (cut short by a full disk, say):
    a damaged one is set aside (checkpoints.damaged/), said so with its file and reason, and the stage starts afresh."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: never resume from it
        aside = path.parent.with_name("checkpoints.damaged")
        if aside.exists():
            shutil.rmtree(aside)
        path.parent.rename(aside)
        log(f"{path}: damaged ({type(e).__name__}: {str(e)[:120]}); set aside as {aside}, and this stage starts afresh")
        return None


def load_checkpoint(path: Path, params, map_location="cpu") -> dict | None:
    """The checkpoint at `path` when it was saved with these `params`; None when there is none (or a damaged one,
    set aside). Other parameters: an error, since resuming would mix two trainings."""
    c = read_checkpoint(path, map_location)
    if c is None:
        return None
    if c["params"] != asdict(params):
        raise ValueError(f"{path}: saved with other parameters; use another output folder or resume=False")
    return c


def discard_stale_checkpoints(out_dir: Path, params, log=print, inputs: str = "") -> None:
    """A stage re-run with changed parameters (mufin run --resume <id> --only NN -p NN.key=value), or on changed
    inputs (`inputs`: a digest of what it trains on, e.g. stage 04's shortlists), starts afresh: the old checkpoints
    are moved aside, never mixed in."""
    ckpt = Path(out_dir) / "checkpoints" / "last.pt"
    seen = ckpt.parent / "inputs.txt"
    why = ""
    saved = read_checkpoint(ckpt, log=log)
    if saved is not None and saved["params"] != asdict(params):
        why = "saved with other parameters"
    elif ckpt.exists() and inputs and (not seen.exists() or seen.read_text() != inputs):
        why = "trained on other inputs (an earlier stage ran again)"
    if why:
        old = ckpt.parent.with_name("checkpoints.previous")
        if old.exists():
            shutil.rmtree(old)
        ckpt.parent.rename(old)
        log(f"{ckpt}: {why}; kept as {old} and training starts afresh")
    if inputs:
        seen.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(seen) as f:
            f.write(inputs)


def saved_record(path: Path) -> dict:
    """A saved model file (model.pt): its weights and the parameters it was trained with."""
    return torch.load(path, map_location="cpu", weights_only=False)
