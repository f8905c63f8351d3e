"""Protein design with a VAE over a protein family."""
