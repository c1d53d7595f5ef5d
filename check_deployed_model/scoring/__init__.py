"""Scoring on labelled photos: an export or a checkpoint, clean and under capture shifts (accuracy),
and the shifts themselves (shifts)."""
