"""The training loop: epochs of shuffled batches, EMA, LR schedule, atomic per-epoch checkpoints, resume.

Randomness of epoch e comes from a generator seeded with (seed, e), so resuming after epoch e
replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from fundiff.core.schedule import linear_schedule
from fundiff.errors import UserError
from fundiff.io.files import versions, write_json, write_text
from fundiff.nets.unet import UNet
from fundiff.train import checkpoint as ckpt
from fundiff.train.augment import random_affine
from fundiff.train.data import Digits, split_holdout
from fundiff.train.distributed import Ranks, all_sum, data_parallel, sync_batchnorm
from fundiff.train.objectives import ddpm_loss, denoiser_loss, flow_loss, one_hot_with_dropout
from fundiff.train.recipes import Recipe


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch LR: ExponentialLR(gamma = 0.1 ** (1 / epochs)), constant, or cosine to 1% of lr."""
    if recipe.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, recipe.lr_gamma)
    if recipe.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs, eta_min=recipe.lr * 0.01)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


def ema_warmup(step: int) -> float:
    """The EMA's warm-up ceiling on its decay after ``step`` steps: (1 + step) / (10 + step)."""
    return (1 + step) / (10 + step)


@torch.no_grad()
def ema_update(ema: UNet, net: UNet, decay: float, step: int) -> None:
    """ema <- d ema + (1 - d) net with warm-up d = min(decay, :func:`ema_warmup` (step)); buffers copied."""
    d = min(decay, ema_warmup(step))
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - d)  # one fused call (as swa_utils does)
    for be, b in zip(ema.buffers(), net.buffers()):
        be.copy_(b)


def ema_warmup_steps(decay: float) -> int:
    """The first step n at which :func:`ema_warmup` (n) reaches ``decay``: n = ceil((10 d - 1) / (1 - d))
    (4,490 for 0.998)."""
    return max(0, math.ceil(round((10 * decay - 1) / (1 - decay), 6)))


def ema_warmup_note(decay: float, steps: int) -> str | None:
    """What to tell a user whose ``--ema-decay`` the run's ``steps`` never reach (None when they do, or no EMA)."""
    if decay <= 0 or steps >= ema_warmup_steps(decay):
        return None
    end = ema_warmup(steps)
    return (f"note: --ema-decay {decay:g} is never reached: the EMA's warm-up, decay min({decay:g}, (1 + n) / (10 + n))"
            f" at step n, gets there after {ema_warmup_steps(decay):,} steps and this run takes {steps:,} (the decay "
            f"ends at {end:.4f}), so any --ema-decay from {end:.4f} up gives the same weights; more epochs average "
            "longer")


def batch_loss(net: UNet, recipe: Recipe, x: torch.Tensor, y: torch.Tensor, g: torch.Generator,
               shard: slice | None = None) -> torch.Tensor:
    """The recipe's objective on one batch (with ``shard``: this process's share of it)."""
    if recipe.model == "denoiser":
        return denoiser_loss(net, x, recipe.sigma, recipe.pure_noise, g, shard)
    c = one_hot_with_dropout(y, recipe.p_uncond, g, recipe.num_classes) if recipe.model == "class" else None
    if recipe.objective == "flow":
        return flow_loss(net, x, c, g, recipe.time_sampling, shard)
    return ddpm_loss(net, x, c, linear_schedule(recipe.T, recipe.beta_start, recipe.beta_end), g,
                     recipe.loss_weighting, shard)


class Trainer:
    """Trains one recipe into one run directory."""

    def __init__(self, recipe: Recipe, run_dir: Path, data: Digits, device: torch.device, progress: bool = True,
                 on_epoch=None, data_dir: Path | None = None, download: Path | None = None,
                 ranks: Ranks = Ranks()) -> None:  # noqa: B008 - a frozen dataclass
        """``on_epoch(trainer, epoch)`` runs after each sample epoch's checkpoint (and again for the epoch a resumed
        run starts from, since a kill may have stopped it half-way); ``data_dir``/``download`` are recorded in
        run.json so that --resume finds the same data by itself. Under torchrun (``ranks``) every process trains
        its shard of each batch with DDP and only rank 0 writes."""
        self.ranks = ranks
        self.recipe, self.run_dir, self.device = recipe, Path(run_dir), device
        self.progress = progress and ranks.main
        self.on_epoch = on_epoch
        self.train_set, self.held_out = split_holdout(data, recipe.holdout_per_class)
        self.data_source = data.source
        self.split_sources = (self.train_set.source, self.held_out.source)
        self.data_dirs = {"data_dir": _absolute(data_dir), "download": _absolute(download)}
        self.resumed = False
        torch.manual_seed(recipe.seed)
        self.net = ckpt.build_net(recipe).to(device)
        if recipe.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if ranks.distributed:  # whole-batch BatchNorm statistics, then DDP; self.net stays what is saved
            self.net = sync_batchnorm(self.net, device)
        self.train_net = data_parallel(self.net, device) if ranks.distributed else self.net
        self.ema = copy.deepcopy(self.net).eval() if recipe.ema_decay > 0 else None
        self.opt = torch.optim.Adam(self.net.parameters(), lr=recipe.lr, fused=True)  # one kernel for all parameters
        self.sched = make_scheduler(self.opt, recipe)
        self.epoch, self.step, self.history, self.losses = 0, 0, [], []

    # ---- state on disk -------------------------------------------------------------------------
    def resume(self) -> None:
        info = ckpt.read_run(self.run_dir)
        saved = Recipe.from_dict(info["recipe"])
        if saved != self.recipe:
            diff = {k: (v, getattr(self.recipe, k)) for k, v in saved.to_dict().items()
                    if v != self.recipe.to_dict()[k]}
            raise UserError(f"cannot resume {self.run_dir} with a different recipe: {diff} (saved, asked)")
        saved_data = info["data"]
        saved_dir, this_dir = saved_data.get("data_dir"), self.data_dirs["data_dir"]
        if saved_dir is not None and this_dir is not None and Path(saved_dir) != Path(this_dir):
            raise UserError(f"cannot resume {self.run_dir}: it was trained on the data in {saved_dir}, not on "
                            f"that in {this_dir}")
        if saved_data["source"] != self.data_source and not self._same_data_dir(saved_data):
            raise UserError(f"cannot resume {self.run_dir}: it was trained on {saved_data['source']}, "
                            f"not {self.data_source}")
        # the same data, maybe named from another folder: keep the run's own record of it
        self.data_source = saved_data["source"]
        self.split_sources = (saved_data.get("train", self.split_sources[0]),
                              saved_data.get("held_out", self.split_sources[1]))
        for k in self.data_dirs:
            self.data_dirs[k] = saved_data.get(k, self.data_dirs[k])
        self.resumed = True
        if info["epoch"] == 0:
            return
        ckpt.load_checkpoint(self.run_dir, info["epoch"], self.net, self.ema, self.opt, info["optimizer"])
        self.sched.load_state_dict(info["scheduler"])
        self.epoch, self.step, self.history = info["epoch"], info["step"], info["history"]
        self.losses = _read_losses(self.run_dir / "loss.csv", self.step)

    def _same_data_dir(self, saved: dict) -> bool:
        """The saved run's IDX folder and this one are the same folder (named relative to another directory)."""
        a, b = saved.get("data_dir"), self.data_dirs["data_dir"]
        return a is not None and b is not None and Path(a) == Path(b) and len(self.train_set) == saved.get(
            "train_images") and len(self.held_out) == saved.get("held_out_images")

    def info(self, status: str) -> dict:
        r = self.recipe
        return {
            "kind": "fundiff-run", "status": status, "recipe": r.to_dict(), "unet": ckpt.unet_config(r).to_dict(),
            "seed": r.seed, "epoch": self.epoch, "step": self.step, "device": str(self.device),
            "data": {"source": self.data_source, "train": self.split_sources[0], "train_images": len(self.train_set),
                     "held_out": self.split_sources[1], "held_out_images": len(self.held_out), **self.data_dirs},
            "versions": versions(), "history": self.history,
            "optimizer": getattr(self, "_opt_json", None), "scheduler": self.sched.state_dict(),
        } | ({"processes": self.ranks.world} if self.ranks.distributed else {})

    def save(self, status: str) -> None:
        """Checkpoint first, then loss log, then run.json, then drop the older checkpoint: a kill at
        any point leaves run.json naming a complete checkpoint of the epoch it records. (Rank 0 only.)"""
        if not self.ranks.main:
            return
        self._opt_json = ckpt.save_checkpoint(self.run_dir, self.epoch, self.net, self.ema, self.opt)
        write_text(self.run_dir / "loss.csv", _losses_csv(self.losses))
        write_json(self.run_dir / ckpt.RUN_FILE, self.info(status))
        for old in self.run_dir.glob("checkpoint_*.safetensors"):
            if old.name != ckpt.checkpoint_name(self.epoch):
                old.unlink()

    # ---- training --------------------------------------------------------------------------------
    def run(self) -> dict:
        r = self.recipe
        if self.epoch == 0:
            self.save("running")
        elif self.resumed and self._is_sample_epoch(self.epoch) and self.on_epoch is not None and self.ranks.main:
            self.on_epoch(self, self.epoch)  # a kill may have come between its checkpoint and its pictures
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress, unit="batch",
                   dynamic_ncols=True, desc=f"train {r.model}/{r.objective}")
        try:
            while self.epoch < r.epochs:
                self.train_epoch(bar)
        finally:
            bar.close()  # also on an error: its message then starts on a line of its own
        self.save("done")
        return self.info("done")

    @property
    def total_steps(self) -> int:
        """The optimizer steps of the whole run: batches per epoch times epochs."""
        return math.ceil(len(self.train_set) / self.recipe.batch_size) * self.recipe.epochs

    def train_epoch(self, bar: tqdm | None = None) -> None:
        """One epoch: its batches, the LR step, its weights (a sample epoch), checkpoint and pictures."""
        r, epoch = self.recipe, self.epoch + 1
        g = epoch_generator(r.seed, epoch)
        perm = torch.randperm(len(self.train_set), generator=g)
        self.net.train()
        t0, seen, ep_losses = time.perf_counter(), 0, []
        for start in range(0, len(perm), r.batch_size):
            idx = perm[start:start + r.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x = random_affine(self.train_set.images[idx].to(self.device), g, r.augment)
            loss = self._step(x, self.train_set.labels[idx].to(self.device), g)
            seen += len(idx)
            ep_losses.append(loss)
            # kept as loss.csv holds them, so that a resumed run (which reads them back) draws the same loss curve
            self.losses.append((self.step, epoch, _csv_number(loss), _csv_number(self.opt.param_groups[0]["lr"])))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        self.sched.step()
        seconds = time.perf_counter() - t0
        self.epoch = epoch
        self.history.append({"epoch": epoch, "mean_loss": sum(ep_losses) / len(ep_losses),
                             "last_loss": ep_losses[-1], "seconds": round(seconds, 2),
                             "images_per_s": round(seen / seconds, 1)})
        if self._is_sample_epoch(epoch) and self.ranks.main:
            ckpt.save_weights(ckpt.weights_path(self.run_dir, epoch), self.sampling_net().state_dict(), r, epoch)
        self.save("running" if epoch < r.epochs else "done")
        if self.on_epoch is not None and self._is_sample_epoch(epoch) and self.ranks.main:
            self.on_epoch(self, epoch)

    def _is_sample_epoch(self, epoch: int) -> bool:
        return epoch in self.recipe.sample_epochs or epoch == self.recipe.epochs

    def _step(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> float:
        r = self.recipe
        if r.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        shard = self.ranks.shard(len(x)) if self.ranks.distributed else None
        with torch.autocast(self.device.type, torch.bfloat16, enabled=r.precision == "bf16"):
            loss = batch_loss(self.train_net, r, x, y, g, shard)
        value = float(all_sum(loss) if shard is not None else loss.detach())  # the whole batch's loss
        if not math.isfinite(value):
            raise UserError(f"training diverged at step {self.step + 1}: the loss is {value}; lower --lr (now "
                            f"{self.opt.param_groups[0]['lr']:g}) and train again (--out keeps the last finished "
                            "epoch)")
        self.opt.zero_grad(set_to_none=True)
        (loss * self.ranks.world if shard is not None else loss).backward()  # DDP averages: the shares add up
        self.opt.step()
        self.step += 1
        if self.ema is not None:
            ema_update(self.ema, self.net, r.ema_decay, self.step)
        return value

    def sampling_net(self) -> UNet:
        """The EMA weights when the recipe keeps them, else the live net."""
        return self.ema if self.ema is not None else self.net


def _csv_number(x: float) -> float:
    return float(f"{x:.6g}")


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _losses_csv(rows: list[tuple]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "epoch", "loss", "lr"])
    w.writerows([(s, e, f"{loss:.6g}", f"{lr:.6g}") for s, e, loss, lr in rows])
    return buf.getvalue()


def _read_losses(path: Path, upto_step: int) -> list[tuple]:
    if not path.is_file():
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [(int(r["step"]), int(r["epoch"]), float(r["loss"]), float(r["lr"])) for r in rows
            if int(r["step"]) <= upto_step]


def read_losses(run_dir: Path) -> list[tuple]:
    """(step, epoch, loss, lr) rows of a run's loss.csv."""
    return _read_losses(Path(run_dir) / "loss.csv", 1 << 62)

