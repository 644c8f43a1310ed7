"""Tonglu (同录): the command line, settings and process orchestration that front the packages."""
