"""Provider adapters: one module per vendor behind the `providers.base.Provider` protocol."""
