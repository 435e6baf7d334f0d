import os
import sys
import tempfile

# Tests import `helpers` from this folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA compile time dominates these tests on CPU, and many tests (and the subprocesses
# they start, which inherit the environment) compile identical programs: share them
# through JAX's persistent compilation cache, fresh for each test session.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="sslx-tests-jax-cache-")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
