"""The Hugging Face Trainer as LIFT trains with it: its arguments, the answer loss, stratified batches, the
validator's score at each evaluation, the decision loss logged beside the loss, and complete checkpoints.

The Trainer subclass is built inside a function, so that importing this module does not import transformers.
"""

import math
import sys

import torch

from lift_core import models
from lift_core.batches import StratifiedSampler
from lift_core.callbacks import TrainingClock
from lift_core.config import TrainConfig
from lift_core.layer_cache import LowerLayerCache
from lift_core.loss import answer_loss, keeps_logits
from lift_core.runs import Run
from lift_core.validation import Validator


def build_trainer(validator: Validator | None, sampler_groups, clock: TrainingClock,
                  lower_cache: LowerLayerCache | None, writer: Run | None = None, **trainer_arguments):
    """The LiftTrainer; `writer` is the run on the process that writes it, None on the others (and in benchmarks)."""
    from transformers import Trainer

    class LiftTrainer(Trainer):
        """The Trainer with the same loss, computed for less (answer_loss), and the decision loss logged beside it."""

        loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.decision_losses = DecisionLosses()
            self.keeps_logits = keeps_logits(self.model)
            self.validation = {}

        def _get_train_sampler(self, train_dataset=None):
            return StratifiedSampler(sampler_groups, self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, decision_losses, outputs = answer_loss(model, inputs, self.keeps_logits, lower_cache)
            if decision_losses is not None:
                self.decision_losses.add(model.training, decision_losses)
            return (loss, outputs) if return_outputs else loss

        def _save_checkpoint(self, model, trial):
            """The Trainer's checkpoint, then the validator's best and the state file, written last to mark it
            complete; only then are older checkpoints removed, so a kill mid-save leaves the previous one."""
            super()._save_checkpoint(model, trial)
            # Every process saves its RNG state into the folder: only once all have is the checkpoint complete.
            self.accelerator.wait_for_everyone()
            if writer is not None:
                writer.complete_checkpoint(
                    self.state.global_step,
                    {"elapsed_s": clock.elapsed(), "validator": validator.state() if validator is not None else None},
                    validator.save if validator is not None else lambda folder: None)

        def evaluate(self, *args, **kwargs):
            if validator is not None:
                score = None
                if self.args.world_size > 1:
                    from accelerate.utils import broadcast_object_list

                    # The process that writes the run scores (its score is the one recorded), the others take its
                    # score: the best step and early stopping must agree everywhere.
                    score = broadcast_object_list([validator.score(self.model) if writer is not None else None])[0]
                self.validation = validator(self.model, self.state.global_step, score)
            return super().evaluate(*args, **kwargs)

        def log(self, logs, *args, **kwargs):
            evaluation = "eval_loss" in logs
            if evaluation or "loss" in logs:
                decision_loss = self.decision_losses.mean(not evaluation, self)
                if decision_loss is not None:
                    logs[("eval_" if evaluation else "") + "decision_loss"] = decision_loss
            if evaluation:
                logs.update(self.validation)
            super().log(logs, *args, **kwargs)

    return LiftTrainer(**trainer_arguments)


class DecisionLosses:
    """The decision token's losses since the last log, training and evaluation batches apart: logged beside the
    loss, which also counts the answer's format tokens, they show whether the model learns the decision itself."""

    def __init__(self):
        self.totals = {True: [0.0, 0], False: [0.0, 0]}  # keyed by model.training

    def add(self, training: bool, losses: torch.Tensor) -> None:
        totals = self.totals[training]
        totals[0] += losses.sum().item()
        totals[1] += len(losses)

    def mean(self, training: bool, trainer) -> float | None:
        """The mean since the last call, over the rows of every process (each saw its own share); None if none."""
        total, count = self.totals[training]
        self.totals[training] = [0.0, 0]
        if trainer.args.world_size > 1:
            sums = torch.tensor([total, count], dtype=torch.float64, device=trainer.args.device)
            total, count = trainer.accelerator.reduce(sums, "sum").tolist()
        return total / count if count else None


def training_arguments(config: TrainConfig, run: Run, total: int, has_validation: bool):
    from transformers import TrainingArguments

    logging_steps = config.logging_steps or min(10, max(1, total // 50))
    eval_steps = config.eval_steps or max(1, math.ceil(total / config.evaluations))
    return TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.lr,
        max_steps=total,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(config.warmup * total),  # any warm-up is at least one step
        logging_steps=logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_steps,
        save_strategy="no",  # CheckpointSchedule decides when
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=models.compute_dtype() == torch.bfloat16,
        report_to="none",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_pin_memory=False,
        # Every LoRA weight is used each step. The Trainer's default for a peft model (True) walks the autograd
        # graph every step under DDP, and with gradient checkpointing (QLoRA on a GPU) fails outright.
        ddp_find_unused_parameters=False,
    )
