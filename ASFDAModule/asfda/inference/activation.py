"""What a network's output means, turned into class probabilities exactly once.

Networks end differently: most return logits, some apply softmax themselves (deepbet), some return
log-probabilities (a ``LogSoftmax`` head). A second softmax over probabilities flattens them towards uniform
(entropy and ASD pinned high), and a softmax over log-probabilities is harmless but a softmax over
``exp`` of them is not: so the model's description names its output activation and everything downstream
(scoring, pseudo-labels, losses) goes through these two functions.

A single output channel is a binary foreground (sigmoid for logits) and becomes two channels,
background first.

Sigmoid multi-label outputs (``MultiLabel``: one channel a region, regions may overlap, as BraTS's tumour
core, whole tumour and enhancing tumour) become the probabilities of the label map's values: value v is the
event "exactly the channels of v are on", P(v) = prod_{c in v} p_c * prod_{c not in v} (1 - p_c) with the
channels independent given the image (what a sigmoid head models), renormalised over the listed values
(background: no channel on). p_c is the sigmoid of the logit shifted by logit(threshold), so that
"p_c > 1/2" is the bundle's own "sigmoid > threshold". Entropy, ASD, prototypes, pseudo-labels and the
losses then see a distribution over labels like any other, and a label map's value trains every channel
it implies (an enhancing voxel raises core, whole and enhancing together).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.spec import MultiLabel, OutputActivation

__all__ = ["MultiLabel", "OutputActivation", "to_logits", "to_probabilities"]

EPSILON = 1e-6  # keeps log(p) finite where a network outputs an exact 0


def multi_label_log_probabilities(output: torch.Tensor, multi_label: MultiLabel) -> torch.Tensor:
    """(B, C, ...) sigmoid logits -> (B, num_classes, ...) log-probabilities of the label values (module doc);
    values no region names get log 0."""
    shift = math.log(multi_label.threshold / (1.0 - multi_label.threshold))
    logits = output.float() - shift
    log_on, log_off = F.logsigmoid(logits), F.logsigmoid(-logits)
    shape = (output.shape[0], multi_label.num_classes, *output.shape[2:])
    result = torch.full(shape, -math.inf, dtype=logits.dtype, device=output.device)
    listed = dict(multi_label.regions)
    listed.setdefault(0, ())
    for value, channels in listed.items():
        on = torch.zeros(output.shape[1], dtype=torch.bool, device=output.device)
        on[list(channels)] = True
        result[:, value] = torch.where(on[None, :, None, None, None], log_on, log_off).sum(1)
    return torch.log_softmax(result, dim=1)  # renormalised over the listed values


def to_probabilities(output: torch.Tensor, activation: OutputActivation | MultiLabel) -> torch.Tensor:
    """(B, C, ...) network output -> (B, C', ...) class probabilities that sum to 1 over the channels."""
    if isinstance(activation, MultiLabel):
        return multi_label_log_probabilities(output, activation).exp()
    output = output.float()
    activation = OutputActivation(activation)
    if output.shape[1] == 1:
        if activation is OutputActivation.LOGITS:
            foreground = torch.sigmoid(output)
        elif activation is OutputActivation.LOG_PROBABILITIES:
            foreground = output.exp()
        else:
            foreground = output
        foreground = foreground.clamp(0.0, 1.0)
        return torch.cat([1.0 - foreground, foreground], dim=1)
    if activation is OutputActivation.LOGITS:
        return torch.softmax(output, dim=1)
    if activation is OutputActivation.LOG_PROBABILITIES:
        return output.exp()
    return output.clamp_min(0.0) / output.clamp_min(0.0).sum(1, keepdim=True).clamp_min(EPSILON)


def to_logits(output: torch.Tensor, activation: OutputActivation | MultiLabel) -> torch.Tensor:
    """Network output -> scores whose softmax is the class probabilities (what losses with softmax need).

    log p is such a score, so a network that outputs probabilities trains through the same losses; its
    gradient passes through the network's own softmax.
    """
    if isinstance(activation, MultiLabel):
        return multi_label_log_probabilities(output, activation).clamp_min(math.log(EPSILON))
    activation = OutputActivation(activation)
    if activation is OutputActivation.LOGITS and output.shape[1] > 1:
        return output
    if activation is OutputActivation.LOG_PROBABILITIES and output.shape[1] > 1:
        return output
    return to_probabilities(output, activation).clamp_min(EPSILON).log()
