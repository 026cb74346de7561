"""The top layer: published tables (``tables/*.toml``) turned into runs of the entry points,
those runs executed (locally or through submitit), and the measured table reported."""
