"""RunSetup: a run's state and how it is built: task, model, compressor, run folder, checkpoint meta."""
import contextlib
import datetime
import os
import signal

import numpy as np

import engine
from compressors import plugin, report
from compressors.run_meta import RESUME_FIELDS, check_run_meta
from engine import backend
from engine import rng as engine_random
from layers.init import build_budget
from layers.serialization import check_recorded_model
from training import distributed, run_folder
from training.builders import (accepted_keywords, build_compressor, build_model, build_task, model_constructor,
                               model_spec, place)
from training.checkpoint import CHECKPOINT_KIND, checkpoint_path, load_init_weights, read_checkpoint, save_checkpoint
from training.divergence import DEFAULT_FACTOR, DEFAULT_PATIENCE, DivergenceWatch
from training.errors import UserError
from training.options import RESUME_MAY_CHANGE, apply_recipe, compressor_args, effective_config, flag
from training.selection import Selection
from training.threads import AutoThreads, auto_applies, thread_count


class RunSetup:
    """What a run is made of and what its checkpoint restores; the loop is training.loop.Run."""

    def __init__(self, args):
        self.args = args
        self.out = None
        self.history = []
        self.seconds = 0.0
        self.global_step = 0
        self.teacher = None
        self.before_finetune = None
        self.scheduler = None
        self.dist = distributed.SingleProcess()     # main() sets the MPI group under mpiexec
        self.lock = None
        self.build_budget = None   # a --resume's parameter budget (untrusted sizes), set by setup()
        self.divergence = DivergenceWatch(getattr(args, "diverge_factor", DEFAULT_FACTOR),
                                          getattr(args, "diverge_patience", DEFAULT_PATIENCE))
        self.auto_threads = AutoThreads() if auto_applies(getattr(args, "threads", None)) else None

    def setup(self):
        args = self.args
        self.resume_meta, self.resume_arrays = None, None
        if args.resume:
            self.resume_arrays = read_checkpoint(args.resume, "--resume: {}")
            self.resume_meta = self.resume_arrays.meta
            try:
                check_run_meta(self.resume_meta, f"--resume {args.resume}", required=RESUME_FIELDS)
            except ValueError as e:
                raise UserError(str(e)) from None
            self._check_resume_changes(self.resume_meta.get("config", {}))
        self.recipe = apply_recipe(args)
        self.dist.check_global_batch(args.batch_size)
        if args.device == "gpu" and not backend.gpu_available():
            raise UserError("--device gpu: CuPy with a CUDA device is not available "
                            "(pip install 'compactnet[gpu]' on a machine with an NVIDIA GPU)")
        self.task = self.dist.shard_task(build_task(args))
        self.model_name, self.model_kwargs = model_spec(args, self.task)
        self.build_budget = None
        if self.resume_arrays is not None:   # sizes from an untrusted checkpoint's config: checked first
            arch = {"name": self.model_name, "kwargs": self.model_kwargs}
            self.build_budget = check_recorded_model(args.resume, arch, [], None, self.resume_arrays.model_state)
        natural = self.task.steps_per_epoch(args.batch_size)   # also where a task rejects the batch size
        try:
            next(iter(self.task.test_batches(args.eval_batch_size)), None)
        except ValueError as e:
            raise UserError(f"--eval-batch-size {args.eval_batch_size}: {e}") from None
        self.steps_per_epoch = args.steps or natural
        self.example = self._example_input()
        if args.augment_shift and np.ndim(self.example) != 4:
            raise UserError(f"--augment-shift needs image batches (B, C, H, W); task {args.task!r} gives "
                            f"inputs of shape {np.shape(self.example)}")
        self.selection = self._selection()
        self.compressor = build_compressor(args)
        self.out = self._out_dir()
        self.train_rng = np.random.default_rng(args.seed)

    def _selection(self):
        if self.args.select == "best-valid" and "valid" not in self.task.splits:
            raise UserError(f"--select best-valid chooses on a validation split; task {self.args.task!r} holds "
                            "none out here (--valid-size 0)")
        return Selection(self.args.select, self.task.higher_is_better)

    def _check_resume_changes(self, saved):
        """Every setting this invocation gives (command line or --config) that the saved run fixed must agree."""
        args = self.args
        for key in sorted(getattr(args, "chosen", args.explicit) - RESUME_MAY_CHANGE):
            if key in saved and saved[key] != getattr(args, key):
                where = flag(key) if key in args.explicit else f"{flag(key)} (from --config {args.config})"
                raise UserError(f"--resume: {where} was {saved[key]!r} in the saved run and cannot "
                                f"change on resume (only {', '.join(sorted(map(flag, RESUME_MAY_CHANGE)))} can)")

    def _example_input(self):
        for inputs, targets in self.task.test_batches(2):
            self.example_targets = report.as_example(targets, 2)
            return report.as_example(inputs, 2)
        raise UserError(f"task {self.args.task!r} has no test batches")

    def _out_dir(self):
        """The run folder, created new or checked and locked (training/run_folder.py has the rules)."""
        args = self.args
        resumed = os.path.dirname(os.path.realpath(checkpoint_path(args.resume))) if args.resume else None
        if not self.dist.is_root:    # rank 0 alone checks, creates and locks the folder; main() shares its name
            return args.out or resumed
        if args.out or args.resume:
            out = args.out or resumed
            resuming = resumed is not None and os.path.realpath(out) == resumed
            self.lock = run_folder.prepare(out, overwrite=args.overwrite, resuming=resuming)
            return out
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{args.task}-{self.model_name}-{args.compress}-{stamp}"
        out = run_folder.create_unique(os.path.join("runs", name))
        self.lock = run_folder.acquire(out)
        return out

    def example_on_device(self):
        x = backend.to_device(self.example, self.args.device)
        if x.dtype.kind == "f":
            x = x.astype(self.args.dtype)
        return x

    def to_batch(self, inputs, targets):
        args = self.args
        x = backend.to_device(np.asarray(inputs), args.device)
        if x.dtype.kind == "f" and x.dtype != args.dtype:
            x = x.astype(args.dtype)
        y = backend.to_device(np.asarray(targets), args.device)
        return engine.Tensor(x), y

    def build(self):
        """Dense model -> (--init-from) -> compressor.apply; dense counts taken before apply."""
        args = self.args
        engine.manual_seed(args.seed)
        try:
            with contextlib.nullcontext() if self.build_budget is None else build_budget(self.build_budget):
                model = build_model(self.model_name, self.model_kwargs, args)
        except (ValueError, TypeError) as e:
            raise UserError(f"--model {self.model_name} {self.model_kwargs}: {e}") from None
        try:
            self.dense_rows = report.summary(model, self.example_on_device())
        except (ValueError, TypeError) as e:
            raise UserError(f"model {self.model_name!r} does not fit the input of task {args.task!r}: {e}") from None
        self.dense_origin = plugin.dense_origin(self.model_name)
        if self.dense_origin != self.model_name:
            self.dense_rows = self._origin_rows()
        if args.init_from:
            load_init_weights(model, args.init_from)
        try:
            model = self.compressor.apply(model, self.task)
        except plugin.DoesNotApply as e:
            raise UserError(f"--compress {args.compress} does not apply to model {self.model_name}: {e}") from None
        except (ValueError, TypeError) as e:
            raise UserError(f"--compress {args.compress}: {e}") from None
        model = self.dist.prepare_model(place(model, args))
        self._check_fits(model)
        if args.distill_from:
            self.teacher = self._build_teacher()
        return model

    def _origin_rows(self):
        """report.summary rows of the dense network this run's model came from (compressors.plugin.
        DENSE_ORIGINS), built with the keywords it shares with the model; the engine's random state is
        kept, so the run itself is unchanged."""
        constructor = model_constructor(self.dense_origin)
        accepted = accepted_keywords(constructor)
        kwargs = {k: v for k, v in self.model_kwargs.items() if accepted is None or k in accepted}
        state = engine_random.get_state()
        try:
            origin = place(constructor(**kwargs), self.args)
        finally:
            engine_random.set_state(state)
        return report.summary(origin, self.example_on_device())

    def _build_teacher(self):
        """--distill-from: the dense --model with a trained run's weights, in eval mode (the engine's
        random state is restored afterwards, so the student's run is otherwise unchanged)."""
        args = self.args
        path = args.distill_from
        if self.task.metric_name != "accuracy":
            raise UserError(f"--distill-from needs a classification task (soft targets over classes); "
                            f"task {args.task!r} reports {self.task.metric_name!r}")
        teacher_checkpoint = read_checkpoint(path, "--distill-from: cannot read the teacher's checkpoint: {}")
        weights, meta = teacher_checkpoint.model_state, teacher_checkpoint.meta
        saved = (meta or {}).get("config", {})
        if saved.get("compress", "none") != "none":
            raise UserError(f"--distill-from {path}: the teacher must be a dense run (--compress none); "
                            f"it was trained with --compress {saved.get('compress')}")
        if saved.get("model") not in (None, self.model_name):
            raise UserError(f"--distill-from {path}: the teacher is a --model {saved.get('model')} run; "
                            f"this run trains --model {self.model_name}")
        state = engine_random.get_state()
        try:
            teacher = build_model(self.model_name, self.model_kwargs, args)
        finally:
            engine_random.set_state(state)
        try:
            teacher.load_state_dict(weights)
        except (KeyError, ValueError) as e:
            raise UserError(f"--distill-from {path}: the weights do not fit a dense --model {self.model_name} "
                            f"({e})") from None
        teacher = place(teacher, args)
        teacher.eval()
        return teacher

    def _check_fits(self, model):
        """One forward pass and loss on two test examples (eval mode, no graph): a model whose output
        does not suit the task's loss is a user error, reported before training starts."""
        x, y = self.to_batch(self.example, self.example_targets)
        model.eval()
        try:
            with engine.no_grad():
                self.task.loss(model(x), y)
        except (ValueError, TypeError) as e:
            raise UserError(f"model {self.model_name!r} (compression {self.args.compress!r}) does not fit "
                            f"task {self.args.task!r}: {e}") from None
        finally:
            model.train()

    def finalize(self, model):
        try:
            model = self.compressor.finalize(model, self.task)
        except (ValueError, TypeError) as e:
            raise UserError(f"--compress {self.args.compress}: finalize failed: {e}") from None
        return self.dist.prepare_model(place(model, self.args))

    def stop_requested(self):
        """Whether a SIGINT/SIGTERM asks the run to stop here; under MPI, whether any rank received one
        (every rank gets the same answer, so all stop after the same step)."""
        agreed = self.dist.stop_agreed(self.guard.received is not None)
        if agreed and self.guard.received is None:
            self.guard.received = signal.SIGINT      # received by another rank
        return agreed

    def save(self, name, model, optimizer, meta):
        """Write checkpoint `name` into the run folder, with --select's best-so-far weights; under MPI rank 0
        alone writes (every rank holds the same state)."""
        if self.dist.is_root:
            save_checkpoint(os.path.join(self.out, name), model, optimizer, meta, self.selection.arrays())

    # ---- checkpoint state --------------------------------------------
    def meta(self, phase, epoch, step_in_epoch, epoch_rng_state, partial):
        return {
            "kind": CHECKPOINT_KIND, "threads": thread_count(self.args),
            "config": effective_config(self.args),
            "architecture": {"model": self.model_name, "kwargs": self.model_kwargs},
            "compressor": {"name": self.args.compress, "config": self.compressor.config(),
                           "args": compressor_args(self.args)},
            "task": self.task.config(),
            "phase": phase, "epoch": epoch, "step_in_epoch": step_in_epoch,
            "global_step": self.global_step, "seconds": self.seconds,
            "train_rng": epoch_rng_state, "engine_rng": engine_random.get_state(),
            "scheduler_epoch": self.scheduler.epoch if self.scheduler is not None else 0,
            "partial": partial, "history": self.history, "divergence": self.divergence.state(),
            "best": self.selection.meta(),
            "compressor_state": (self.compressor.state_dict()
                                 if hasattr(self.compressor, "state_dict") else None),
        }

    def restore(self, model, optimizer, meta, arrays):
        """Put a RunCheckpoint's (`arrays`) state and `meta` back into the model, optimizer, schedule,
        random generators, selection and compressor."""
        model_state, optim_arrays = arrays.model_state, arrays.optim_arrays
        try:
            model.load_state_dict(model_state)
        except (KeyError, ValueError) as e:
            raise UserError(f"--resume: the checkpoint does not fit the rebuilt model ({e})") from None
        if optimizer is not None and "optimizer" in meta:
            optimizer.load_state_dict({"arrays": optim_arrays, **meta["optimizer"]})
        if self.scheduler is not None:
            self.scheduler.epoch = int(meta.get("scheduler_epoch", 0))
        engine_random.set_state(meta["engine_rng"])
        self.selection.load(meta.get("best"), arrays.extra_arrays)
        if meta.get("compressor_state") is not None and hasattr(self.compressor, "load_state_dict"):
            self.compressor.load_state_dict(meta["compressor_state"])
