"""Run: the training loop (train step, epochs, the train and finetune phases, interrupts) over RunSetup."""
import math
import os
import time

import numpy as np

import engine
from engine import optim
from engine.ops import distillation_loss
from tasks.augment import random_shift
from training.argconfig import write_toml
from training.builders import make_optimizer, make_scheduler
from training.checkpoint import CHECKPOINT, TRAINED, checkpoint_path, read_checkpoint
from training.divergence import check_finite_epoch
from training.errors import NonFiniteLoss, UserError
from training.options import effective_config
from training.progress import progress
from training.run_setup import RunSetup
from training.summary import epoch_row, write_log, write_report


class Run(RunSetup):
    """One training run: the loop; RunSetup builds its parts and its checkpoint state."""

    def train_step(self, model, optimizer, inputs, targets, where):
        if self.args.augment_shift:
            # shifts drawn from (seed, global step): the same on an exact resume, independent of batch order
            rng = np.random.default_rng([self.args.seed, self.global_step, 0xA6])
            inputs = random_shift(inputs, self.args.augment_shift, rng)
        inputs, targets = self.dist.local_batch(inputs, targets)   # under MPI: this rank's rows
        x, y = self.to_batch(inputs, targets)
        output = model(x)
        loss = self.task.loss(output, y)
        objective = loss
        if self.teacher is not None:
            with engine.no_grad():
                teacher_output = self.teacher(x)
            objective = distillation_loss(output, teacher_output, loss, self.args.distill_temp,
                                          self.args.distill_alpha)
        extra = self.compressor.extra_loss(model)
        total = objective if extra is None else objective + extra
        loss_value = float(loss.item())
        extra_value = float(extra.item()) if extra is not None else 0.0
        optimizer.zero_grad()
        total.backward()
        # under MPI: gradients (and losses) averaged over the ranks, before any use of them
        loss_value, extra_value = self.dist.average_gradients(optimizer, loss_value, extra_value,
                                                              self.guard.received is not None)
        if not (math.isfinite(loss_value) and math.isfinite(extra_value)):
            bad = "loss" if not math.isfinite(loss_value) else "extra (compression) loss"
            raise NonFiniteLoss(f"the {bad} became {loss_value if bad == 'loss' else extra_value} at {where}")
        self.divergence.observe(loss_value + extra_value, where)
        if self.args.clip_grad:
            optim.clip_grad_norm([p for g in optimizer.param_groups for p in g["params"]], self.args.clip_grad)
        optimizer.step()
        self.compressor.on_step(optimizer, model)
        return loss_value, extra_value

    def run_phase(self, phase, model, optimizer, epochs, start):
        """Epochs of one phase ('train' or 'finetune'); `start` = (epoch, step_in_epoch, rng state, partial)."""
        args = self.args
        epoch, skip, rng_state, partial = start
        if rng_state is not None:
            self.train_rng.bit_generator.state = rng_state
        while epoch < epochs:
            epoch_state = self.train_rng.bit_generator.state
            sums = dict(partial or {"loss": 0.0, "extra": 0.0, "count": 0, "seconds": 0.0})
            partial = None
            label = f"{phase} epoch {epoch + 1}/{epochs}"
            bar = progress(self.steps_per_epoch, label, enabled=not args.no_progress, every=args.log_every)
            started = time.perf_counter()
            done = 0
            try:
                for i, (inputs, targets) in enumerate(self._epoch_batches()):
                    done = i + 1
                    if i < skip:
                        continue
                    where = f"{phase} epoch {epoch + 1}, step {i + 1} (global step {self.global_step + 1})"
                    if self.auto_threads is not None:
                        self.auto_threads.check()
                    loss_value, extra_value = self.train_step(model, optimizer, inputs, targets, where)
                    self.global_step += 1
                    sums["loss"] += loss_value
                    sums["extra"] += extra_value
                    sums["count"] += 1
                    bar.update(1, f"loss {loss_value:.4g}")
                    if self.stop_requested():
                        self._save_interrupted(phase, model, optimizer, epoch, done, epoch_state, sums, started)
            finally:
                bar.close()
            skip = 0
            lr_used = optimizer.lr
            if self.scheduler is not None:
                self.scheduler.step()
            valid, evaluation = self._evaluate_epoch(phase, epoch + 1, model)
            check_finite_epoch(phase, epoch + 1, self.task.metric_name, valid, evaluation)
            sums["seconds"] += time.perf_counter() - started
            self.seconds += time.perf_counter() - started
            epoch += 1
            row = epoch_row(self, phase, epoch, epochs, sums, evaluation, lr_used, model, valid)
            self.history.append(row)
            if self.dist.is_root:
                write_log(self.out, self.history)
            self.save(CHECKPOINT, model, optimizer,
                      self.meta(phase, epoch, 0, self.train_rng.bit_generator.state, None))
            if self.stop_requested():
                raise self.guard.interrupted()
            if done == 0:
                raise UserError(f"task {args.task!r} produced no training batches")

    def _evaluate_epoch(self, phase, epoch, model):
        """(valid, test) metrics of a finished epoch; --select sees the validation metrics alone, before
        the test split is read (valid is None when the task holds no validation split)."""
        size = self.args.eval_batch_size
        valid = self.task.evaluate(model, size, split="valid") if "valid" in self.task.splits else None
        if valid is not None:
            self.selection.offer(phase, epoch, float(valid[self.task.metric_name]), model, self.compressor)
        return valid, self.task.evaluate(model, size, split="test")

    def _epoch_batches(self):
        """steps_per_epoch batches, drawing further passes of the task's epoch when --steps asks for more."""
        count = 0
        while count < self.steps_per_epoch:
            before = count
            for batch in self.task.train_batches(self.args.batch_size, self.train_rng):
                yield batch
                count += 1
                if count == self.steps_per_epoch:
                    return
            if count == before:
                return

    def _save_interrupted(self, phase, model, optimizer, epoch, done, epoch_state, sums, started):
        sums = dict(sums, seconds=sums["seconds"] + time.perf_counter() - started)
        self.seconds += time.perf_counter() - started
        self.save(CHECKPOINT, model, optimizer, self.meta(phase, epoch, done, epoch_state, sums))
        raise self.guard.interrupted()

    # ---- whole run ---------------------------------------------------
    def execute(self):
        args = self.args
        meta, arrays = self.resume_meta, self.resume_arrays
        phase = meta["phase"] if meta else "train"
        trained = None
        if meta and phase != "train":
            trained = self._load_trained()
            if args.epochs > trained[1]["epoch"]:      # a finished run given more --epochs: train on
                print(f"extending training from {trained[1]['epoch']} to {args.epochs} epochs", flush=True)
                arrays, meta = trained
                phase = "train"
        if meta:
            self.history = list(meta.get("history", []))
            self.seconds = float(meta.get("seconds", 0.0))
            self.global_step = int(meta.get("global_step", 0))
            self.divergence.load(meta.get("divergence"))
            total = args.epochs if phase == "train" else args.finetune_epochs
            print(f"resuming {checkpoint_path(args.resume)}: {phase} phase, {meta['epoch']}/{total} epochs done; "
                  f"continuing with {phase} epoch {meta['epoch'] + 1}/{total} at step {meta['step_in_epoch'] + 1} "
                  f"(global step {self.global_step + 1})", flush=True)
        # under MPI a model that cannot be built ends every rank; built before config.toml because a
        # compressor may settle a default there (tucker's ratio)
        model = self.dist.run_collectively(self.build)
        if self.dist.is_root:
            write_toml(os.path.join(self.out, "config.toml"), effective_config(args),
                       header="effective settings of this run; rerun with: python train.py --config config.toml")
        self._print_header(model)
        with self.guard:
            if phase == "train":
                optimizer = make_optimizer(args, model.parameters(), args.lr)
                self.scheduler = make_scheduler(args, optimizer, args.epochs)
                start = (0, 0, None, None)
                if meta:
                    self.restore(model, optimizer, meta, arrays)
                    start = (meta["epoch"], meta["step_in_epoch"], meta["train_rng"], meta.get("partial"))
                if args.epochs:
                    self.run_phase("train", model, optimizer, args.epochs, start)
                # the model before finalize, resumable as a train-phase checkpoint (to rebuild or extend)
                self.save(TRAINED, model, optimizer,
                          self.meta("train", args.epochs, 0, self.train_rng.bit_generator.state, None))
                self.selection.restore_best("train", model, self.compressor)   # trained.npz keeps the last
                start = (0, 0, None, None)
                model = self.finalize(model)
                self._report_before_finetune(model)
            else:
                self.scheduler = None
                self.restore(model, None, trained[1], trained[0])
                self.selection.restore_best("train", model, self.compressor)
                model = self.finalize(model)
                start = (meta["epoch"], meta["step_in_epoch"], meta["train_rng"], meta.get("partial"))
            optimizer = make_optimizer(args, model.parameters(), args.finetune_lr or args.lr)
            self.scheduler = make_scheduler(args, optimizer, args.finetune_epochs)
            if phase == "finetune":
                self.restore(model, optimizer, meta, arrays)
            if args.finetune_epochs:
                self.run_phase("finetune", model, optimizer, args.finetune_epochs, start)
            # the final checkpoint holds the reported model (--select), a teacher or --init-from source
            self.selection.restore_best("finetune", model, self.compressor)
            self.save(CHECKPOINT, model, optimizer,
                      self.meta("finetune", args.finetune_epochs, 0, self.train_rng.bit_generator.state, None))
        return write_report(self, model)

    def _report_before_finetune(self, model):
        """With --finetune-epochs: what the compressor's finalize step (e.g. truncation) cost, before
        fine-tuning repairs it (printed, and under 'before_finetune' in metrics.json)."""
        if not self.args.finetune_epochs or self.args.compress == "none":
            return
        name = self.task.metric_name
        value = float(self.task.evaluate(model, self.args.eval_batch_size, split="test")[name])
        self.before_finetune = {name: value}
        print(f"after compression, before fine-tuning: test {name} {value:.4g}", flush=True)

    def _load_trained(self):
        """(RunCheckpoint, meta) of trained.npz beside the checkpoint being resumed."""
        path = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path(self.args.resume))), TRAINED)
        trained = read_checkpoint(path, f"--resume: a checkpoint after training needs {TRAINED} beside it ({{}})")
        return trained, trained.meta

    def _print_header(self, model):
        args = self.args
        print(f"task {args.task}  model {self.model_name} {self.model_kwargs}  compress {args.compress}  "
              f"params {model.num_parameters():,}  optimizer {args.optimizer} lr {args.lr:g}  "
              f"epochs {args.epochs} x {self.steps_per_epoch} steps  batch {args.batch_size}  "
              f"device {args.device}  out {self.out}", flush=True)
        note = self.compressor.cost_note()
        if note:
            print(note, flush=True)
