"""The SQLite backend: everything of it, recorder (``.recorder``) and reporting view (``.view``)."""
