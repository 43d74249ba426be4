# preflight's pytest plugin (options, markers, the world, fixtures, the readiness report);
# pytester drives the self-tests in tests/.
pytest_plugins = ["checks.plugin", "pytester"]
