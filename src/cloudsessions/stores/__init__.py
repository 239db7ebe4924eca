"""One module per store; each implements the Store contract and nothing framework-specific."""
