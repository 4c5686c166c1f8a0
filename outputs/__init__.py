"""Result files for the app, built from one job's public messages (no sockets here).

``outputs.app_json``: the JSON document SnowboardingExplained stores per video.
``outputs.overlay``: the overlay video (skeleton, box, track state, mesh silhouette).
"""

# The per-job files asked for with --report, --app-json, --overlay (the report lives in ``report``).
OUTPUT_FILES = ("report", "app_json", "overlay")
