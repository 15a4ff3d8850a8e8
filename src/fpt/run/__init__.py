"""The runner: what `fpt train` and `fpt predict` do around the library.

It owns run directories (config.json, metrics.jsonl, checkpoints, result.json), resume,
data-parallel processes and loggers. The library (`fpt.model`, `fpt.backbones`,
`fpt.tasks`, ...) knows nothing of it; the experiments (`fpt.experiments`) sit on top.
"""
