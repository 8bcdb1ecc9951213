"""Writes the input and the numpy reference output of tests/fixtures/ir/swiglu_mlp.cvir.

Venv: python3 -m venv .venv && .venv/bin/pip install numpy==2.4.6
Run from the repository root: .venv/bin/python scripts/gen_cli_fixtures.py
"""

import numpy as np

OUT = "tests/fixtures/ir"

w_gate = np.array([[0.5, -1.0], [0.25, 0.75], [-0.5, 1.5], [1.0, 0.0]], dtype=np.float32)
w_up = np.array([[1.0, 0.5], [-0.25, 2.0], [0.0, -1.0], [0.5, 0.5]], dtype=np.float32)
w_down = np.array([[1.0, -2.0, 0.5, 0.25], [0.0, 1.0, -1.0, 2.0]], dtype=np.float32)

x = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
gate = x @ w_gate
up = x @ w_up
act = gate / (1.0 + np.exp(-gate)) * up
y = (act @ w_down).astype(np.float32)

np.save(f"{OUT}/swiglu_mlp.x.npy", x)
np.save(f"{OUT}/swiglu_mlp.y.npy", y)
