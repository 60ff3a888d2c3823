"""Image classification: decoding, preprocessing, the Lite0 model and its classes.

Submodules, by what they import:

* ``preprocess`` (Pillow, numpy): untrusted bytes -> RGB image -> model input.
* ``imagenet`` (numpy): the 1000 ImageNet classes and top-k decoding.
* ``torch_legacy`` (numpy): reads a legacy PyTorch state dict without torch.
* ``efficientnet_lite`` and ``build``: Keras, imported only inside the
  functions that build a model, so that importing any of these modules --
  this package included -- leaves TensorFlow unloaded (the worker's parent
  process must stay TensorFlow-free). ``build.read_vision_meta`` needs h5py only.
"""
