"""Flow files: the model, YAML loading with positions, validation, schema and graph export."""
