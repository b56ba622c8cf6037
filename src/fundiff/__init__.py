"""fundiff: Fun With Diffusion Models, as a reusable toolkit."""

__version__ = "0.1.0"
