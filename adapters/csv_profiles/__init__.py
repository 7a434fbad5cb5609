"""CSV mapping profiles shipped with the package (``<name>.toml``); see README.md here."""
