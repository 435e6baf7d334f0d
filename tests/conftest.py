import os
import sys

# Tests import `helpers` from this folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Keep XLA's CPU thread pools from oversubscribing the small CI machine.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
