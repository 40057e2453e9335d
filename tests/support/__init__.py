"""Shared test helpers: fakes of the protocols, tiny models, generated images."""
