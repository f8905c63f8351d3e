"""Fast calorimeter simulation: autoregressive vs one-shot parallel generators of particle
showers, measured like the CaloChallenge."""
