"""What a network's output means, turned into class probabilities exactly once.

Networks end differently: most return logits, some apply softmax themselves (deepbet), some return
log-probabilities (a ``LogSoftmax`` head). A second softmax over probabilities flattens them towards uniform
(entropy and ASD pinned high), and a softmax over log-probabilities is harmless but a softmax over
``exp`` of them is not: so the model's description names its output activation and everything downstream
(scoring, pseudo-labels, losses) goes through these two functions.

A single output channel is a binary foreground (sigmoid for logits) and becomes two channels,
background first.
"""

from __future__ import annotations

import torch

from ..models.spec import OutputActivation

__all__ = ["OutputActivation", "to_logits", "to_probabilities"]

EPSILON = 1e-6  # keeps log(p) finite where a network outputs an exact 0


def to_probabilities(output: torch.Tensor, activation: OutputActivation) -> torch.Tensor:
    """(B, C, ...) network output -> (B, C', ...) class probabilities that sum to 1 over the channels."""
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


def to_logits(output: torch.Tensor, activation: OutputActivation) -> torch.Tensor:
    """Network output -> scores whose softmax is the class probabilities (what losses with softmax need).

    log p is such a score, so a network that outputs probabilities trains through the same losses; its
    gradient passes through the network's own softmax.
    """
    activation = OutputActivation(activation)
    if activation is OutputActivation.LOGITS and output.shape[1] > 1:
        return output
    if activation is OutputActivation.LOG_PROBABILITIES and output.shape[1] > 1:
        return output
    return to_probabilities(output, activation).clamp_min(EPSILON).log()
