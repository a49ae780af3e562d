"""One round of selective semi-supervised fine-tuning.

Labelled cases train with Dice + cross-entropy on foreground-oversampled patches; reliable unlabelled cases
add a masked cross-entropy against an EMA teacher's confident voxels, weighted by a ramped lambda_u. The
teacher is the round's starting model, or with ``teacher_start_fraction`` the student after that share of
the steps trained on the labelled cases alone, or with ``persistent_teacher`` the session's teacher carried
over from the previous round (an average of every round's student); ``classwise_pseudo_labels`` gives
every class its own voxel threshold and an equal share of the unlabelled loss (``reliable.py``).

The round keeps the best weights by validation Dice: on held-out labelled cases when the caller gives some,
else on the labelled cases themselves when there are at least two. The parent's Dice on the same cases is
measured first, so the caller's guard can tell whether the round made the model worse. The learning rate warms
up linearly; ``config.adaptation`` chooses which weights may change (``peft.py``). Every network output goes
through the model's output activation (``inference/activation.py``), so a network that ends in a softmax
trains right.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from torch import nn

from ..config import FinetuneConfig
from ..errors import CancelledError
from ..inference.activation import to_logits, to_probabilities
from ..inference.predictor import predict
from ..io.preprocessing import IMAGE, LABEL, ModelSpaceCase
from ..metrics import dice_per_class, mean_of
from ..models.loading import LoadedModel
from .augmentation import augment_batch, strong_augmentation, weak_augmentation
from .batchnorm import freeze_batchnorm, recompute_batchnorm_statistics
from .ema import make_teacher, update_teacher
from .patches import draw_batch, labelled_sampler, unlabelled_sampler
from .peft import freeze_statistics, select_trainable
from .reliable import class_balanced_cross_entropy, masked_cross_entropy, unlabelled_weight

RoundProgress = Callable[[int, int, str], None]  # (step, steps, message)


@dataclass
class RoundResult:
    state_dict: dict[str, torch.Tensor]
    validation_dice: float | None
    steps: int
    seconds: float
    n_labelled: int
    n_unlabelled: int
    best_step: int
    history: list[dict] = field(default_factory=list)
    parent_validation_dice: float | None = None  # the model before the round, on the same cases
    validation: str = "fit"  # "held-out": labelled cases kept out of training; "fit": the training cases
    teacher_state_dict: dict[str, torch.Tensor] | None = None  # the teacher to carry on, when it persists


def validation_dice(model: LoadedModel, cases: list[ModelSpaceCase], device) -> float:
    """Mean over cases of the mean foreground Dice of a full sliding-window prediction."""
    scores = []
    for case in cases:
        labels = predict(model, case.image.as_tensor(), device).labels
        scores.append(mean_of(dice_per_class(labels, case.label.as_tensor()[0], model.spec.num_classes)))
    return float(np.nanmean(scores)) if scores else float("nan")


def warmup(steps: int, fraction: float):
    """Learning-rate factor: linear from 1/warm-up steps to 1, then constant (a pretrained network's first
    steps see gradients from an optimiser with no moment estimates yet)."""
    warmup_steps = max(int(round(steps * fraction)), 1)
    return lambda index: min((index + 1) / warmup_steps, 1.0)


def teacher_start_step(config: FinetuneConfig) -> int:
    """The last step trained on labelled cases alone (0: the teacher is the round's starting model)."""
    if not 0.0 <= config.teacher_start_fraction < 1.0:
        raise ValueError(f"teacher_start_fraction must lie in [0, 1), got {config.teacher_start_fraction}")
    return int(round(config.steps * config.teacher_start_fraction))


def persists_teacher(config: FinetuneConfig) -> bool:
    return config.persistent_teacher and config.semi_supervised


def labelled_only_steps(config: FinetuneConfig, semi_supervised: bool) -> int:
    """The steps before the unlabelled loss starts (all of them in a round with no unlabelled case)."""
    if not semi_supervised:
        return config.steps
    if persists_teacher(config):
        return 0  # the teacher already learnt from the earlier rounds' labelled cases
    return teacher_start_step(config)


def initial_teacher(
    student: nn.Module,
    config: FinetuneConfig,
    semi_supervised: bool,
    supervised_steps: int,
    teacher_state: dict[str, torch.Tensor] | None,
) -> nn.Module | None:
    """The teacher at step 1: the persistent one (from ``teacher_state``, else the student), the student
    when a round's own teacher starts now, else None (a late teacher, or no semi-supervised part)."""
    if persists_teacher(config):
        teacher = make_teacher(student)
        if teacher_state is not None:
            teacher.load_state_dict(teacher_state, strict=True)
        return teacher
    return make_teacher(student) if semi_supervised and supervised_steps == 0 else None


def finetune_round(
    model: LoadedModel,
    labelled: list[ModelSpaceCase],
    unlabelled: list[ModelSpaceCase],
    config: FinetuneConfig,
    device: torch.device | str = "cpu",
    progress: RoundProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
    validation: list[ModelSpaceCase] | None = None,
    teacher_state: dict[str, torch.Tensor] | None = None,
) -> RoundResult:
    """Train ``model.network`` in place for ``config.steps`` steps and return the weights to keep.

    ``validation``: labelled cases kept out of ``labelled`` to choose the best step and to compare with the
    parent on; without them the labelled cases serve (the fit).

    With ``config.persistent_teacher`` (and ``semi_supervised``) the teacher exists from step 1, starts from
    ``teacher_state`` (the previous round's, loaded strictly) or else from the student, and follows the
    student after every step, even in a round with no unlabelled case; ``teacher_start_fraction`` does not
    apply. The result's ``teacher_state_dict`` is then the teacher to pass to the next round.
    """
    if not labelled:
        raise ValueError("a fine-tuning round needs at least one labelled case")
    device = torch.device(device)
    set_determinism(config.seed)
    rng = np.random.default_rng(config.seed)
    patch = tuple(config.patch_size or model.spec.roi_size)
    activation = model.spec.activation
    student: nn.Module = model.network.to(device)
    validation_cases = validation or labelled
    parent_dice = validation_dice(model, validation_cases, device)
    if config.recompute_batchnorm:  # target statistics from whole volumes, then frozen (see batchnorm.py)
        recompute_batchnorm_statistics(student, [c.image.as_tensor() for c in labelled + unlabelled], device)
    semi_supervised = config.semi_supervised and bool(unlabelled)
    supervised_steps = labelled_only_steps(config, semi_supervised)
    teacher = initial_teacher(student, config, semi_supervised, supervised_steps, teacher_state)
    unlabelled_loss = class_balanced_cross_entropy if config.classwise_pseudo_labels else masked_cross_entropy
    trainable = select_trainable(student, config.adaptation, model.spec.in_channels, patch)
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup(config.steps, config.warmup_fraction))
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    sample_labelled = labelled_sampler(patch, config.positive_negative_ratio)
    sample_unlabelled = unlabelled_sampler(patch)
    for transform in (sample_labelled, sample_unlabelled):
        transform.set_random_state(seed=config.seed)

    weak, strong = (None, None)
    if config.augment:  # weak view for labelled patches, strong view for the student on unlabelled ones
        weak, strong = weak_augmentation(config.seed), strong_augmentation(config.seed + 1)
    validate = bool(validation) or len(labelled) >= 2
    best = (-1.0, 0, copy.deepcopy(student.state_dict()))
    history: list[dict] = []
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        if cancelled is not None and cancelled():
            raise CancelledError(f"fine-tuning cancelled at step {step - 1} of {config.steps}")
        if semi_supervised and teacher is None and step > supervised_steps:
            teacher = make_teacher(student)  # what the labelled cases taught, before it teaches itself
        student.train()
        freeze_statistics(student)
        if config.recompute_batchnorm:
            freeze_batchnorm(student)
        batch = draw_batch(labelled, sample_labelled, rng, config.batch_size, with_labels=True)
        if weak is not None:
            batch[IMAGE] = augment_batch(batch[IMAGE], weak)
        with torch.autocast(device_type=device.type, enabled=use_amp):
            logits = to_logits(student(batch[IMAGE].to(device)), activation)
            loss = loss_function(logits, batch[LABEL].to(device))
            ramp = (step - supervised_steps, config.steps - supervised_steps)
            with_unlabelled = semi_supervised and teacher is not None
            weight_u = unlabelled_weight(*ramp, config.lambda_u_max) if with_unlabelled else 0.0
            loss_u = torch.zeros((), device=device)
            if with_unlabelled and weight_u > 0:
                images = draw_batch(unlabelled, sample_unlabelled, rng, config.batch_size, False)[IMAGE].to(
                    device
                )
                with torch.no_grad():
                    teacher_probabilities = to_probabilities(teacher(images), activation)
                student_view = augment_batch(images, strong) if strong is not None else images
                loss_u = unlabelled_loss(
                    to_logits(student(student_view), activation), teacher_probabilities, config.tau_vox
                )
            total = loss + weight_u * loss_u
        learning_rate = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        if teacher is not None:
            update_teacher(teacher, student, config.ema_decay)
        record = {
            "step": step,
            "loss": loss.detach().item(),
            "loss_u": loss_u.detach().item(),
            "lambda_u": weight_u,
            "lr": learning_rate,
        }
        if validate and (step % config.validate_every == 0 or step == config.steps):
            student.eval()
            record["val_dice"] = validation_dice(model, validation_cases, device)
            if record["val_dice"] > best[0]:
                best = (record["val_dice"], step, copy.deepcopy(student.state_dict()))
        history.append(record)
        if progress is not None:
            progress(step, config.steps, f"step {step}/{config.steps} loss {float(total.detach()):.3f}")

    student.eval()
    if validate:
        score, best_step, state = best
        student.load_state_dict(state)
    else:
        score, best_step, state = validation_dice(model, labelled, device), config.steps, student.state_dict()
    return RoundResult(
        state_dict=cpu_copy(state),
        validation_dice=float(score),
        steps=config.steps,
        seconds=time.perf_counter() - started,
        n_labelled=len(labelled),
        n_unlabelled=len(unlabelled) if semi_supervised else 0,
        best_step=best_step,
        history=history,
        parent_validation_dice=float(parent_dice),
        validation="held-out" if validation else "fit",
        teacher_state_dict=cpu_copy(teacher.state_dict()) if persists_teacher(config) else None,
    )


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}
