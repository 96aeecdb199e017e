"""A toy attribution method that exists only in the tests: one registry entry plus this module.

S = scale * sign(Phi) sign(phi_q)^T on the final checkpoint of model 0.
"""

import numpy as np

from aria import registry


def operators(feats, params):
    f = feats[0]
    return [np.sign(f["train"])], [float(params.get("scale", 1.0)) * np.sign(np.asarray(f["query"], np.float64)).T]


registry.register(
    registry.Method(
        "toy",
        "Toy",
        "gradient-dense",
        reads="final",
        normalize="rank",
        module=__name__,
        params={"scale": {"type": "number"}},
        run_params=("scale",),
    )
)
