"""One module per store; each implements cloudsessions.store.Store and nothing framework-specific."""
