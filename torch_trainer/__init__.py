"""Train the mug classifier in PyTorch: `python -m torch_trainer.train` (the CLI) on

- settings/: what a run trains (its plan, from a recipe file in recipes/ and flags),
- training/: how (the jobs, a run's data and families, one model's loop),
- classifier/: the classifier itself, which the other packages use too (photos decoded, the
  network and its checkpoint, scores of its predictions).

Layers, lowest first: classifier, settings, training, train.py (tests/test_layers.py holds them).
"""
