"""PIL images -> the (B, 3, S, S) batch in [0, 1] every backbone reads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image


def images_to_batch(images: Sequence[Image.Image], size: int, normalise: bool = False) -> torch.Tensor:
    """Resize RGB images to ``size x size`` (bicubic) and stack them as a (B, 3, S, S) tensor in [0, 1].

    With ``normalise`` each image is shifted and scaled to mean 0.5 and standard deviation 0.2
    (one mean/std over all its pixels), removing global brightness and contrast differences.
    """
    arrays = [
        np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
        for image in images
    ]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous() / 255.0
    if normalise:
        mean = batch.mean(dim=(1, 2, 3), keepdim=True)
        std = batch.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        batch = ((batch - mean) / std * 0.2 + 0.5).clamp(0.0, 1.0)
    return batch
