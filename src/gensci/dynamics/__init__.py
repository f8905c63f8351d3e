"""Learning the physics of interacting defects from snapshots (gensci dynamics)."""
