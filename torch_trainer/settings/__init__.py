"""What a run trains: its plan (plan: models, families, the run), the recipe files it comes from
(recipes) and the command-line flags that change it (flags)."""
