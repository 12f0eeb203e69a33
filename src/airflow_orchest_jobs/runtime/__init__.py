"""Files mounted read-only into step containers (the runner), not imported by the plugin."""
