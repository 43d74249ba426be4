# preflight's pytest plugin is installed (pyproject.toml: a pytest11 entry point, `-e .` in
# requirements.txt), so it loads from any folder and before the command line is parsed.
# This file stays empty on purpose: anything here would load for every run from this project.
