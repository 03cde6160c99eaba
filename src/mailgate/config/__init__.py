"""Settings: provider presets, the settings model and its validation, and the settings store."""
