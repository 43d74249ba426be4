"""preflight fetchers: download what can be downloaded, reorganize what must be reorganized."""
