"""ContextNet variants of Poudel et al. 2018, Table 4, and their registry entries.

| name      | deep branch input | shallow branches | width | Table 4 params | mIoU (val) |
|-----------|-------------------|------------------|-------|----------------|------------|
| cn14      | 1/4               | 1                | 1.0   | 0.85M          | 65.9       |
| cn12      | 1/2               | 1                | 1.0   | 0.85M          | 68.7       |
| cn18      | 1/8               | 1                | 1.0   | 0.85M          | 60.1       |
| cn124     | 1/4               | 1 and 1/2        | 1.0   | 0.93M          | 67.3       |
| cn14_500  | 1/4               | 1                | 0.72  | 0.49M          | 62.1       |
| cn14_160  | 1/4               | 1                | 0.39  | 0.16M          | 57.7       |

The paper does not say how cn14-500 and cn14-160 were narrowed. kseg scales every layer
by one width multiplier, the value that brings the count to Table 4's (490,459 and 159,387
parameters, section 3.2.1); `tests/models/contextnet` checks all counts to 5%.
"""

from __future__ import annotations

CONTEXTNET_VARIANTS: dict[str, dict] = {
    "cn14": {"deep_factor": 4, "shallow_factors": (1,), "width_multiplier": 1.0},
    "cn12": {"deep_factor": 2, "shallow_factors": (1,), "width_multiplier": 1.0},
    "cn18": {"deep_factor": 8, "shallow_factors": (1,), "width_multiplier": 1.0},
    "cn124": {"deep_factor": 4, "shallow_factors": (2, 1), "width_multiplier": 1.0},
    "cn14_500": {"deep_factor": 4, "shallow_factors": (1,), "width_multiplier": 0.72},
    "cn14_160": {"deep_factor": 4, "shallow_factors": (1,), "width_multiplier": 0.39},
}

# Table 4 of the paper: parameters in millions for 19 Cityscapes classes.
TABLE4_PARAMS_M = {
    "cn14": 0.85,
    "cn12": 0.85,
    "cn18": 0.85,
    "cn124": 0.93,
    "cn14_500": 0.49,
    "cn14_160": 0.16,
}
