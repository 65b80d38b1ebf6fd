"""Stores: one module per database behind the `storage.base.Store` protocol."""
