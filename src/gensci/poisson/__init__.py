"""Conditional diffusion surrogate for the Poisson equation."""
