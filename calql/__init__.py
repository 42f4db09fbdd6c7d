"""calql: a PyTorch library for Cal-QL / CQL / IQL / SAC offline-to-online RL (Nakamoto et al., 2023).

The package is organised by stage: ``calql.data`` (datasets, sources, MC-return labeling),
``calql.envs`` (environments matching the dataset's observation layout), ``calql.agents``
(the methods' losses and networks), ``calql.training`` (pre-training and fine-tuning loops,
checkpoints), ``calql.tracking`` (metrics files and MLflow) and ``calql.commands`` (the CLI).
"""

import os as _os

# Bitwise-reproducible MKL GEMMs (Conditional Numerical Reproducibility): without it MKL may pick
# code paths by memory alignment, so a resumed process can drift from an uninterrupted one.
# Measured cost on the 2-core reference machine: none within noise (benchmarks/README.md).
# Must be set before MKL initialises, i.e. before torch runs its first matmul; users can override.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
