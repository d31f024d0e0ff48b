"""apt and rpm repositories: upstream indexes, libsolv closures, downloads, repo metadata."""
