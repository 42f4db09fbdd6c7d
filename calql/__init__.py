"""calql: a PyTorch library for Cal-QL / CQL / IQL / SAC offline-to-online RL (Nakamoto et al., 2023).

The package is organised by stage: ``calql.data`` (datasets, sources, MC-return labeling),
``calql.envs`` (environments matching the dataset's observation layout), ``calql.agents``
(the methods' losses and networks), ``calql.training`` (pre-training and fine-tuning loops,
checkpoints), ``calql.tracking`` (metrics files and MLflow) and ``calql.commands`` (the CLI).
"""

__version__ = "0.1.0"
