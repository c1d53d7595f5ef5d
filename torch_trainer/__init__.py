"""Fine-tune a torchvision ResNet on the mug photos (data -> train -> checkpoint)."""
