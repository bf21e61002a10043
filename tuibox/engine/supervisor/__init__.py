"""The supervisor (one per state root), its keeper, and the engine's client for it."""
