"""ActionMesh mode (docs/architecture.md 5.8): the reference pipeline on the same engine, for side-by-side runs.

Per window: the full stage-I schedule with classifier-free guidance, then the stage-II autoencoder
predicts every vertex's absolute position at each frame from the known frame's mesh. The camera
correspondences come from the same attention maps as in chain mode, captured on the last step only,
so both modes produce comparable results files.
"""

from __future__ import annotations

import torch

from .window import WindowTracks, image_positions


def baseline_window(backbone, context, known_index: int, known_latent, known_vertices, faces, landmark_ids,
                    settings, progress=None, seed: int = 0) -> WindowTracks:
    steps = settings.baseline_steps
    total = steps + 1
    run = backbone.stage1(context, known_index, known_latent, steps, settings.baseline_guidance, seed,
                          capture_layers=settings.capture_layers, capture_from=steps - 1,
                          progress=lambda i, n: progress and progress(i, total))
    vertices = backbone.stage2(run.x0, known_index, known_vertices, faces)
    if progress is not None:
        progress(total, total)
    ids = torch.as_tensor(landmark_ids, device=vertices.device)
    known_landmarks = known_vertices.to(backbone.device, torch.float32)[ids]  # host vertices, device indices
    A_VZ = backbone.decoder_attention(known_latent, known_landmarks, settings.attention_chunk)
    xy, xy_conf, xy_sigma = image_positions(backbone, A_VZ, run)
    positions = vertices[:, ids]
    return WindowTracks(positions, torch.ones(positions.shape[:2], device=positions.device), xy, xy_conf, run.x0,
                        vertices, xy_sigma)
