"""The LEAD pipelines (lead_msmarco: the paper's three phases; lead_quality: the method comparison),
the wiring and command-line parts they share, and the local runners' console and containers."""
