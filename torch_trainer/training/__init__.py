"""Training: the jobs (jobs: train, resume), a run's data (data), its families and their averages
(run), one model's loop (fit, with the parts build makes, augment, distill), the run folder's
records (folder) and torchrun's plumbing (distributed)."""
