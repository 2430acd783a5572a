"""What happens around the Trainer's steps: the training clock, when to stop, when to checkpoint, and the
metrics.jsonl rows and log lines of the process that writes the run.

Each callback class is built inside a function, so that importing this module does not import transformers.
"""

import time

from lift_core.distributed import on_any_process
from lift_core.runs import Run

# A checkpoint at least this often (besides one at each epoch's end), so a killed run loses minutes at most.
CHECKPOINT_EVERY_S = 300
# Trainer log keys that go into metrics.jsonl, besides the step counters and timings.
LOGGED_KEYS = ("loss", "decision_loss", "eval_loss", "eval_decision_loss", "val_accuracy", "val_rae",
               "learning_rate", "grad_norm")


class TrainingClock:
    """Seconds spent training, summed over a run's resumes: what metrics.jsonl and the checkpoints record."""

    def __init__(self, before: float = 0.0):
        self.before = before
        self.started = time.time()

    def start(self) -> None:
        self.started = time.time()

    def elapsed(self) -> float:
        return self.before + time.time() - self.started


def stop_callback(stop, validator):
    """Ends the training on a stop request (`stop.requested`), or once the validator finds nothing left to learn."""
    from transformers import TrainerCallback

    class StopWhenAsked(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if on_any_process(stop.requested):  # a stop seen by any process stops them all at this step
                control.should_training_stop = True

        def on_evaluate(self, args, state, control, **kwargs):
            if validator and validator.exhausted:  # alike on every process: all take the writer's score
                control.should_training_stop = True

    return StopWhenAsked()


def checkpoint_callback(stop, save_steps: int):
    from transformers import TrainerCallback

    class CheckpointSchedule(TrainerCallback):
        """Asks for a checkpoint at each epoch's end, every `save_steps` steps, at least every CHECKPOINT_EVERY_S
        seconds, and on a stop; never at the last step, after which the adapter itself is saved."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_save = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            due = (stop.requested or (save_steps and state.global_step % save_steps == 0)
                   or time.time() - self.last_save >= CHECKPOINT_EVERY_S)
            due = on_any_process(bool(due))  # the processes' clocks and stop flags differ: all save, or none
            if due and state.global_step < state.max_steps:
                control.should_save = True

        def on_epoch_end(self, args, state, control, **kwargs):
            if state.global_step < state.max_steps:
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            self.last_save = time.time()

    return CheckpointSchedule()


def metrics_callback(writer: Run, validator, clock: TrainingClock):
    """For the process that writes the run (`writer`) alone: every process logs the same, gathered, values."""
    from transformers import TrainerCallback

    class RunMetricsCallback(TrainerCallback):
        """Appends one metrics.jsonl row and prints one log line per log event, and says why training stopped early."""

        def on_train_begin(self, args, state, control, **kwargs):
            clock.start()
            self.last_step = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            elapsed = clock.elapsed()
            step = state.global_step
            if step == self.last_step and not any(key in logs for key in LOGGED_KEYS):
                return  # the closing summary at a step already logged: one row per step
            self.last_step = step
            per_step = elapsed / step if step else None
            writer.append_metrics({
                "step": step,
                "total_steps": state.max_steps,
                "epoch": round(state.epoch or 0.0, 4),
                **{key: logs.get(key) for key in LOGGED_KEYS},
                "elapsed_s": round(elapsed, 3),
                "eta_s": round(per_step * (state.max_steps - step), 1) if per_step else None,
                "tokens_per_s": round(state.num_input_tokens_seen / elapsed, 1) if elapsed else None,
            })
            if "loss" in logs:
                decision = logs.get("decision_loss")
                print(f"step {step}/{state.max_steps} loss {logs['loss']:.4f}"
                      + (f" decision loss {decision:.4f}" if decision is not None else "")
                      + f" ({elapsed:.0f}s)", flush=True)

        def on_evaluate(self, args, state, control, **kwargs):
            if validator and validator.exhausted:  # StopWhenAsked ends the training
                print(f"Stopping early at step {state.global_step} of {state.max_steps}: "
                      f"{validator.stop_reason}.", flush=True)

    return RunMetricsCallback()
