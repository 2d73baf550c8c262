"""Configuration: the settings table, parsers, masking and errors."""
