"""The database: one schema (`schema`), its migrations (`migrate`, `migrations/`)."""
