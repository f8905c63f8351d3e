"""Limited-angle CT with generative priors."""
