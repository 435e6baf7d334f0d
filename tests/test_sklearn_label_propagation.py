"""scikit-learn's own tests for LabelSpreading / LabelPropagation, run against sslx's.

The module is the one inside the installed scikit-learn
(``sklearn/semi_supervised/tests/test_label_propagation.py``), executed with its
``label_propagation`` module replaced by one holding sslx's classes: nothing is copied,
so the tests are pinned to the installed version. Tests of scikit-learn's private
``_build_graph`` are skipped by name (sslx builds its graph inside a compiled program
and has no such method).
"""

import importlib.util
import pathlib
import sys
import types

import numpy as np
import pytest
import sklearn
import sklearn.semi_supervised
from sklearn.utils.estimator_checks import parametrize_with_checks

import sslx.label_propagation as sx

_SKLEARN_TESTS = (pathlib.Path(sklearn.__file__).parent / "semi_supervised" / "tests"
                  / "test_label_propagation.py")

# Tests that call scikit-learn's private `_build_graph` (the affinity matrix it iterates on).
_PRIVATE = {
    "test_label_spreading_closed_form": "calls the private method `_build_graph`",
    "test_label_propagation_closed_form": "calls the private method `_build_graph`",
    "test_label_propagation_build_graph_normalized": "calls the private method `_build_graph`",
}


def _load_against_sslx():
  """The installed test module, its `label_propagation` pointing at sslx's classes."""
  shim = types.ModuleType("sslx_as_sklearn_label_propagation")
  shim.LabelPropagation = sx.LabelPropagation
  shim.LabelSpreading = sx.LabelSpreading
  name = "sklearn.semi_supervised._label_propagation"
  saved_module, saved_attr = sys.modules[name], sklearn.semi_supervised._label_propagation
  sys.modules[name] = shim
  sklearn.semi_supervised._label_propagation = shim
  try:
    spec = importlib.util.spec_from_file_location("sklearn_tests_against_sslx",
                                                  _SKLEARN_TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    sys.modules[name] = saved_module
    sklearn.semi_supervised._label_propagation = saved_attr
  assert module.label_propagation is shim
  return module


_module = _load_against_sslx()
for _name in dir(_module):
  if _name.startswith("test_"):
    _test = getattr(_module, _name)
    if _name in _PRIVATE:
      _test = pytest.mark.skip(reason=_PRIVATE[_name])(_test)
    globals()[_name] = _test


@pytest.fixture(params=[np.float64])
def global_dtype(request):
  """scikit-learn's fixture (its conftest): float64 unless SKLEARN_RUN_FLOAT32_TESTS."""
  return request.param


def test_the_sklearn_module_runs_sslx_classes():
  estimators = {klass for klass, _ in _module.ESTIMATORS}
  assert estimators == {sx.LabelPropagation, sx.LabelSpreading}
  assert set(_PRIVATE) <= {n for n in dir(_module) if n.startswith("test_")}


# scikit-learn's estimator checks, all of them: both classes, both graph builders
# (dense rbf affinity, dense kNN graph). Two are skipped by scikit-learn itself when
# their optional dependency is missing (pandas; SCIPY_ARRAY_API for array-API input).
@parametrize_with_checks([sx.LabelSpreading(), sx.LabelPropagation(kernel="knn")])
def test_sklearn_estimator_checks(estimator, check):
  check(estimator)
