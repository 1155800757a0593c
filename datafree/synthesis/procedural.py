"""Procedural images that need no data: the dead-leaves model (Lee, Mumford and Huang 2001).

Discs and rectangles of random flat intensity are painted one over another, their sizes drawn from a power law,
so an image has occlusion edges, flat regions and a spread of grey levels at every scale: the statistics natural
images share (Baradad et al. 2021, "Learning to see by looking at noise", train networks on such images). Optimised
pixels start as uniform noise, which the teacher's losses turn into saturated, high-contrast images; a dead-leaves
start (``pixel_init=dead_leaves``) begins from mid-grey regions and edges instead.
"""

from __future__ import annotations

import torch


def dead_leaves(count: int, channels: int, height: int, width: int, generator: torch.Generator | None = None,
                shapes: int = 40, min_radius: float = 0.03, max_radius: float = 0.6,
                power: float = 3.0) -> torch.Tensor:
    """``count`` images in [0, 1], shape ``(count, channels, height, width)``.

    Each image starts as one random colour, then ``shapes`` leaves are painted back to front. A leaf is a disc or an
    axis-aligned rectangle (even odds) at a uniform centre, with a radius (a fraction of the image's side) drawn
    from density ``r ** -power`` on ``[min_radius, max_radius]`` (many small leaves, a few large), a log-normal
    aspect ratio and one colour (a grey level per channel). The loop runs over leaves, each painted on every image
    at once.
    """
    if count < 0 or channels < 1 or height < 1 or width < 1 or shapes < 0:
        raise ValueError("dead_leaves needs count >= 0, shapes >= 0 and a positive image size")
    if not 0 < min_radius <= max_radius or power == 1:
        raise ValueError("dead_leaves needs 0 < min_radius <= max_radius and power != 1")

    def draw(*size: int) -> torch.Tensor:
        return torch.rand(*size, generator=generator)

    ys = torch.linspace(0, 1, height).view(1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, width)
    images = draw(count, channels, 1, 1).expand(count, channels, height, width).clone()
    low, high = min_radius ** (1 - power), max_radius ** (1 - power)
    for _ in range(shapes):
        radius = (low + draw(count) * (high - low)) ** (1 / (1 - power))  # inverse CDF of r ** -power
        aspect = torch.exp(0.5 * torch.randn(count, generator=generator))
        dy = (ys - draw(count, 1, 1)) / (radius * aspect).view(-1, 1, 1)
        dx = (xs - draw(count, 1, 1)) / (radius / aspect).view(-1, 1, 1)
        disc = dy.square() + dx.square() <= 1
        rectangle = (dy.abs() <= 1) & (dx.abs() <= 1)
        leaf = torch.where((draw(count) < 0.5).view(-1, 1, 1), disc, rectangle).unsqueeze(1)
        images = torch.where(leaf, draw(count, channels, 1, 1), images)
    return images
