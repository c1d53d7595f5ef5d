"""What the other packages use from the trainer: photos and class folders decoded (photos), what
another camera or light does to a photo (capture), the classifier and its checkpoint (network,
efficientnet_lite) and the scores of its predictions (report)."""
