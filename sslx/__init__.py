"""sslx: semi- and self-supervised learning in JAX.

`import sslx` is light: the scikit-learn-style estimators are loaded on first use,
and `import sslx.losses` never pulls in TensorFlow, tfds, orbax or the trainer.
"""

__version__ = "0.1.0"

_LAZY = {
    "LabelSpreading": "sslx.label_propagation",
    "LabelPropagation": "sslx.label_propagation",
}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'sslx' has no attribute {name!r}")
