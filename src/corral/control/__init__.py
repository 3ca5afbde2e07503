"""The control plane: config from YAML and from the database, merged and applied live."""
