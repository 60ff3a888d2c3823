"""EfficientNet-Lite0 rebuilt in Keras from the packaged PyTorch weights, offline."""
