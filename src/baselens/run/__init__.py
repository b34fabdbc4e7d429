"""Driver: config, pipeline, execution, CLI."""
