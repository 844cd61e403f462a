"""What a restorer learns (CodeFormer's stage-2 objective): the clean image's codes and features, from the frozen
tokenizer, and the loss pulling the restorer's prediction towards them."""
from __future__ import annotations

import torch
import torch.nn.functional as F

CODE_WEIGHT = 0.5     # CodeFormer's lambda_token
FEATURE_WEIGHT = 1.0  # its feature loss weight


@torch.no_grad()
def clean_targets(tokenizer, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean images -> (codes (B, h, w) long, features (B, dim, h, w)) of the frozen tokenizer, in eval mode so
    that no codebook updates."""
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        features = tokenizer.features(clean)
        return tokenizer.quantizer(features).indices, features
    finally:
        tokenizer.train(was_training)


def restoration_loss(output, codes: torch.Tensor, features: torch.Tensor, code_weight: float = CODE_WEIGHT,
                     feature_weight: float = FEATURE_WEIGHT) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``code_weight`` x cross-entropy to the clean codes + ``feature_weight`` x mean squared distance to the clean
    features; returns the loss and detached 0-dim logs (``code_ce``, ``feature_l2``, ``code_accuracy``), read
    with ``float()`` at log time so the step never waits on the device."""
    code_ce = F.cross_entropy(output.logits.float(), codes)
    feature_l2 = F.mse_loss(output.features.float(), features.float())
    loss = code_weight * code_ce + feature_weight * feature_l2
    accuracy = (output.logits.detach().argmax(1) == codes).float().mean()
    return loss, {"code_ce": code_ce.detach(), "feature_l2": feature_l2.detach(), "code_accuracy": accuracy}
