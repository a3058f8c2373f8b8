"""The provincial readiness dashboard: server-side HTML (Jinja2), inline SVG charts, CSV, /metrics."""
