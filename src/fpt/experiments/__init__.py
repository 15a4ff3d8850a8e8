"""Experiments built on `fpt train`: sweeps over grids, reports from result files."""
