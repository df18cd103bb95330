"""Click commands, one module per stage; `hwnas.cli` gathers them. Each calls a public Python function."""
