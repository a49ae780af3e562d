"""One round of selective semi-supervised fine-tuning.

Labelled cases train with Dice + cross-entropy on foreground-oversampled patches; reliable unlabelled cases
add a masked cross-entropy against an EMA teacher's confident voxels, weighted by a ramped lambda_u. The
teacher is the round's starting model, or with ``teacher_start_fraction`` the student after that share of
the steps trained on the labelled cases alone, or with ``persistent_teacher`` the session's teacher carried
over from the previous round (an average of every round's student); ``classwise_pseudo_labels`` gives
every class its own voxel threshold and an equal share of the unlabelled loss (``reliable.py``).

A round trains ``round_steps`` steps (``steps`` + ``steps_per_labelled`` x labelled cases). Its result is an
exponential moving average of the student's weights (``weight_average_decay``), or their plain mean over the
last steps (``tail_average_fraction``); the learning rate warms up linearly, then follows ``lr_schedule``
(``schedule.py``), the encoder at ``encoder_lr_factor`` of the rate.
BatchNorm statistics are recomputed at the start on the training cases plus the pool volumes the caller gives
and then frozen (``batchnorm.py``). Same seed and same cases give the same weights. With ``students`` > 1
the round is a soup: that many students share its steps, each with its own seed, and their results are
averaged (``train_soup``).

With held-out validation cases, the parent's Dice on them is measured first (step 0) and the averaged weights
are validated every ``validate_every`` steps and at the end; the best validated step is the round's result and
the caller's guard compares it with the parent (``guard.py``). Without them the round's result is its last
averaged weights, unvalidated. ``config.adaptation`` chooses which weights may change (``peft.py``). Every
network output goes through the model's output activation (``inference/activation.py``), so a network that
ends in a softmax trains right.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from torch import nn

from ..config import AdaptationMode, FinetuneConfig, round_steps
from ..errors import CancelledError
from ..inference.activation import to_logits, to_probabilities
from ..inference.predictor import predict
from ..io.preprocessing import IMAGE, LABEL, ModelSpaceCase
from ..metrics import dice_per_class, mean_of
from ..models.loading import LoadedModel
from ..models.memory_layout import in_layout, network_layout, to_layout
from .augmentation import augment_batch, strong_augmentation, weak_augmentation
from .batchnorm import adapted_batchnorm_layers, freeze_batchnorm, recompute_batchnorm_statistics
from .ema import (
    average_decay,
    average_states,
    make_average,
    make_teacher,
    tail_mean_decay,
    update_teacher,
)
from .guard import ValidationSignal, best_candidate
from .patches import draw_batch, labelled_sampler, unlabelled_sampler
from .peft import freeze_statistics, parameter_groups, select_trainable
from .reliable import class_balanced_cross_entropy, masked_cross_entropy, unlabelled_weight
from .schedule import learning_rate_factor

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
    validation: str = ValidationSignal.NONE.value  # a ValidationSignal value
    teacher_state_dict: dict[str, torch.Tensor] | None = None  # the teacher to carry on, when it persists
    candidates: dict[int, float] = field(default_factory=dict)  # step -> validation Dice (0: the parent)
    batchnorm_volumes: int = 0  # whole volumes the BatchNorm statistics were recomputed on (0: not)


def validation_dice(model: LoadedModel, cases: list[ModelSpaceCase], device) -> float:
    """Mean over cases of the mean foreground Dice of a full sliding-window prediction."""
    scores = []
    for case in cases:
        labels = predict(model, case.image.as_tensor(), device).labels
        scores.append(mean_of(dice_per_class(labels, case.label.as_tensor()[0], model.spec.num_classes)))
    return float(np.nanmean(scores)) if scores else float("nan")


def result_average_decay(step: int, config: FinetuneConfig) -> float:
    """The round result's averaging decay after ``step``: the tail's plain mean when set, else the EMA."""
    if config.tail_average_fraction > 0:
        return tail_mean_decay(step, config.steps, config.tail_average_fraction)
    return average_decay(step, config.weight_average_decay)


def teacher_start_step(config: FinetuneConfig) -> int:
    """The last step trained on labelled cases alone (0: the teacher is the round's starting model)."""
    if not 0.0 <= config.teacher_start_fraction < 1.0:
        raise ValueError(f"teacher_start_fraction must lie in [0, 1), got {config.teacher_start_fraction}")
    return int(round(config.steps * config.teacher_start_fraction))  # config.steps: the round's total


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
    statistics_volumes: list[torch.Tensor] | None = None,
) -> RoundResult:
    """Train ``model.network`` in place for ``round_steps`` steps and return the weights to keep.

    ``labelled``: the cases to train on; ``validation``: labelled cases kept out of training to choose the
    best step and to compare with the parent on (the steps count them as labelled cases too);
    ``statistics_volumes``: model-space images of unlabelled pool cases that join the training cases'
    images when the BatchNorm statistics are recomputed.

    With ``config.persistent_teacher`` (and ``semi_supervised``) the teacher exists from step 1, starts from
    ``teacher_state`` (the previous round's, loaded strictly) or else from the student, and follows the
    student after every step, even in a round with no unlabelled case; ``teacher_start_fraction`` does not
    apply. The result's ``teacher_state_dict`` is then the teacher to pass to the next round.
    """
    if not labelled:
        raise ValueError("a fine-tuning round needs at least one labelled case")
    if config.students < 1:
        raise ValueError(f"a round trains at least one student, got students={config.students}")
    validation = list(validation or [])
    config = dataclasses.replace(config, steps=round_steps(config, len(labelled) + len(validation)))
    device = torch.device(device)
    started = time.perf_counter()

    def train(
        student: FinetuneConfig, student_progress: RoundProgress | None, held_out: list[ModelSpaceCase]
    ) -> StudentRun:
        return train_student(
            model, labelled, unlabelled, student, device, student_progress, cancelled, held_out,
            teacher_state, statistics_volumes,
        )  # fmt: skip

    if config.students > 1:
        run = train_soup(model, config, device, progress, validation, train)
    else:
        run = train(config, progress, validation)
    model.network.load_state_dict(run.state)
    # Nothing held out: the Dice reported is the fit of the round's weights (``model`` holds them now), which
    # the guard never compares with the parent (it has no parent Dice).
    signal, dice = ValidationSignal.HELD_OUT, run.candidates.get(run.best_step)
    if not validation:
        signal, dice = ValidationSignal.FIT, fit_dice(model, labelled, device)
    return RoundResult(
        state_dict=cpu_copy(run.state),
        validation_dice=dice,
        steps=config.steps,
        seconds=time.perf_counter() - started,
        n_labelled=len(labelled),
        n_unlabelled=len(unlabelled) if config.semi_supervised and unlabelled else 0,
        best_step=run.best_step,
        history=run.history,
        parent_validation_dice=run.candidates.get(0),
        validation=signal.value,
        teacher_state_dict=run.teacher_state,
        candidates=run.candidates,
        batchnorm_volumes=run.batchnorm_volumes,
    )


@dataclass
class StudentRun:
    """What training gave, before the round's fit or validation Dice is reported."""

    state: dict[str, torch.Tensor]  # the round's result: the best validated or the last averaged weights
    best_step: int
    candidates: dict[int, float]  # step -> validation Dice (0: the parent)
    history: list[dict]
    teacher_state: dict[str, torch.Tensor] | None  # the teacher to carry on, when it persists
    batchnorm_volumes: int


def train_student(
    model: LoadedModel,
    labelled: list[ModelSpaceCase],
    unlabelled: list[ModelSpaceCase],
    config: FinetuneConfig,
    device: torch.device,
    progress: RoundProgress | None,
    cancelled: Callable[[], bool] | None,
    validation: list[ModelSpaceCase],
    teacher_state: dict[str, torch.Tensor] | None,
    statistics_volumes: list[torch.Tensor] | None,
) -> StudentRun:
    """Train ``model.network`` in place for ``config.steps`` steps (the round's, already counted)."""
    set_determinism(config.seed)
    rng = np.random.default_rng(config.seed)
    patch = tuple(config.patch_size or model.spec.roi_size)
    activation = model.spec.activation
    layout = network_layout(device, len(patch))
    student: nn.Module = to_layout(model.network.to(device), layout)
    candidates: dict[int, float] = {}
    if validation:  # the parent is step 0's candidate
        candidates[0] = validation_dice(model, validation, device)
    trainable = select_trainable(student, config.adaptation, model.spec.in_channels, patch)
    statistics_from = 0
    if config.recompute_batchnorm:  # target statistics from whole volumes, then frozen (see batchnorm.py)
        volumes = [c.image.as_tensor() for c in labelled] + list(statistics_volumes or [])
        layers = adapted_batchnorm_layers(student, AdaptationMode(config.adaptation) is AdaptationMode.FULL)
        statistics_from = recompute_batchnorm_statistics(student, volumes, device, layers=layers)
    semi_supervised = config.semi_supervised and bool(unlabelled)
    supervised_steps = labelled_only_steps(config, semi_supervised)
    teacher = initial_teacher(student, config, semi_supervised, supervised_steps, teacher_state)
    unlabelled_loss = class_balanced_cross_entropy if config.classwise_pseudo_labels else masked_cross_entropy
    groups = parameter_groups(
        student, trainable, config.encoder_lr_factor, config.learning_rate, model.spec.in_channels, patch
    )
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda index: learning_rate_factor(
            index, config.steps, config.warmup_fraction, config.lr_schedule, config.anneal_fraction
        ),
    )
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
    averages = config.weight_average_decay > 0 or config.tail_average_fraction > 0
    averaged = make_average(student) if averages else None
    result = dataclasses.replace(model, network=averaged) if averaged is not None else model
    best: tuple[int, dict[str, torch.Tensor]] | None = None
    history: list[dict] = []
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
            logits = to_logits(student(in_layout(batch[IMAGE].to(device), layout)), activation)
            loss = loss_function(logits, batch[LABEL].to(device))
            ramp = (step - supervised_steps, config.steps - supervised_steps)
            with_unlabelled = semi_supervised and teacher is not None
            weight_u = unlabelled_weight(*ramp, config.lambda_u_max) if with_unlabelled else 0.0
            loss_u = torch.zeros((), device=device)
            if with_unlabelled and weight_u > 0:
                images = draw_batch(unlabelled, sample_unlabelled, rng, config.batch_size, False)[IMAGE]
                images = in_layout(images.to(device), layout)
                with torch.no_grad():
                    teacher_probabilities = to_probabilities(teacher(images), activation)
                student_view = augment_batch(images, strong) if strong is not None else images
                loss_u = unlabelled_loss(
                    to_logits(student(student_view), activation), teacher_probabilities, config.tau_vox
                )
            total = loss + weight_u * loss_u
        learning_rate = optimizer.param_groups[-1]["lr"]  # the decoder's, when the encoder's is lower
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        if teacher is not None:
            update_teacher(teacher, student, config.ema_decay)
        if averaged is not None:
            update_teacher(averaged, student, result_average_decay(step, config))
        record = {
            "step": step,
            "loss": loss.detach().item(),
            "loss_u": loss_u.detach().item(),
            "lambda_u": weight_u,
            "lr": learning_rate,
        }
        if validation and (step % config.validate_every == 0 or step == config.steps):
            result.network.eval()
            record["val_dice"] = candidates[step] = validation_dice(result, validation, device)
            if best_candidate({s: d for s, d in candidates.items() if s > 0})[0] == step:
                best = (step, copy.deepcopy(result.network.state_dict()))
        history.append(record)
        if progress is not None:
            progress(step, config.steps, f"step {step}/{config.steps} loss {float(total.detach()):.3f}")

    for network in (student, result.network, teacher):  # saved and served in the default layout
        if network is not None:
            to_layout(network, torch.contiguous_format)
    student.eval()
    best_step, state = best if best is not None else (config.steps, result.network.state_dict())
    return StudentRun(
        state=state,
        best_step=best_step,
        candidates=candidates,
        history=history,
        teacher_state=cpu_copy(teacher.state_dict()) if persists_teacher(config) else None,
        batchnorm_volumes=statistics_from,
    )


def train_soup(
    model: LoadedModel,
    config: FinetuneConfig,
    device: torch.device,
    progress: RoundProgress | None,
    validation: list[ModelSpaceCase],
    train: Callable[[FinetuneConfig, RoundProgress | None, list[ModelSpaceCase]], StudentRun],
) -> StudentRun:
    """A soup of ``config.students`` students (Wortsman et al. 2022): each trains from the round's starting
    weights with its own seed (``student_seed``) for its share of the round's steps, and the round's result
    is the mean of their results. The same compute as one student, and less of any one seed's patch order in
    the result. With validation cases, the parent and the soup are validated (the students are not).
    ``train(config, progress, validation)`` trains ``model.network`` as one student (``train_student``)."""
    if config.steps < config.students:
        raise ValueError(f"a soup of {config.students} students needs as many steps, got {config.steps}")
    start = cpu_copy(model.network.state_dict())
    candidates = {0: validation_dice(model, validation, device)} if validation else {}
    shares = student_steps(config.steps, config.students)
    runs, history, done = [], [], 0
    for index, steps in enumerate(shares):
        model.network.load_state_dict(start)
        student = dataclasses.replace(
            config, students=1, steps=steps, seed=student_seed(config.seed, index, config.students)
        )
        prefix = f"student {index + 1}/{config.students}: "
        run = train(student, offset_progress(progress, done, config.steps, prefix), [])
        history += [{**record, "step": done + record["step"], "student": index} for record in run.history]
        runs.append(dataclasses.replace(run, state=cpu_copy(run.state)))  # the next student moves the network
        done += steps
    model.network.load_state_dict(average_states([run.state for run in runs]))
    if validation:
        model.network.eval()
        candidates[config.steps] = validation_dice(model, validation, device)
    teachers = [run.teacher_state for run in runs if run.teacher_state is not None]
    return StudentRun(
        state=model.network.state_dict(),
        best_step=config.steps,
        candidates=candidates,
        history=history,
        teacher_state=average_states(teachers) if teachers else None,
        batchnorm_volumes=runs[0].batchnorm_volumes,
    )


def student_steps(steps: int, students: int) -> list[int]:
    """The round's steps shared among its students as evenly as whole steps allow."""
    share, extra = divmod(steps, students)
    return [share + (index < extra) for index in range(students)]


def student_seed(seed: int, index: int, students: int) -> int:
    """Student ``index``'s seed: distinct from every student of every other round seed (seed k's students
    are k x students ... k x students + students - 1), and student 0 of seed 0 trains with seed 0."""
    return seed * students + index


def offset_progress(progress: RoundProgress | None, done: int, steps: int, prefix: str):
    """A student's progress as the round's: its step after the ``done`` steps of the students before."""
    if progress is None:
        return None
    return lambda step, _, message: progress(done + step, steps, prefix + message)


def fit_dice(model: LoadedModel, labelled: list[ModelSpaceCase], device, limit: int = 3) -> float:
    """Dice of the round's result on up to ``limit`` of the cases it trained on (the last ones given): what
    the module plots per round when no case is held out. A fit, so it says how well the model reproduces the
    corrections, not how it generalises, and the guard never compares it with the parent."""
    return validation_dice(model, labelled[-limit:], device)


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in state.items()}
