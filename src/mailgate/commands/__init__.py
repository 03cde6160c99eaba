"""Bodies of the CLI commands; `mailgate.cli` only registers them."""
