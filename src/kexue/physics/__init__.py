"""Physics from the blog: the shape of a spinning jump rope (kexue.fm/archives/6784)."""

from kexue.physics.jump_rope import RopeShape, jump_rope, plot_shapes

__all__ = ["RopeShape", "jump_rope", "plot_shapes"]
