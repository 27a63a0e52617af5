"""Small NIR graphs the tests build (the project ships no other project's files)."""
from __future__ import annotations

import nir
import numpy as np


def _cuba(n: int) -> nir.CubaLIF:
    params = dict(tau_syn=2e-4, tau_mem=1e-3, r=10.0, w_in=2.0, v_threshold=1.0, v_reset=0.0,
                  v_leak=0.0)
    return nir.CubaLIF(**{k: np.full(n, v, dtype=np.float32) for k, v in params.items()})


def recurrent_nir(seed: int = 0, inputs: int = 12, hidden: int = 16, outputs: int = 5):
    """Input -> Affine (bias) -> CubaLIF, recurrent Affine lif -> rec -> lif, -> Affine (bias) ->
    CubaLIF -> Output: the NIR paper's recurrent Braille network, small."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    nodes = {"input": nir.Input(np.array([inputs])),
             "fc1": nir.Affine(f32(rng.normal(0, 0.6, (hidden, inputs))),
                               f32(rng.uniform(-0.05, 0.15, hidden))),
             "lif1": _cuba(hidden),
             "rec": nir.Affine(f32(rng.normal(0, 0.3, (hidden, hidden))), f32(np.zeros(hidden))),
             "fc2": nir.Affine(f32(rng.normal(0, 0.5, (outputs, hidden))),
                               f32(rng.uniform(-0.05, 0.1, outputs))),
             "lif2": _cuba(outputs),
             "output": nir.Output(np.array([outputs]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"),
             ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)
