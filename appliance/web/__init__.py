"""The officers' web UI (FastAPI + Jinja2 + htmx). Build it with :func:`appliance.web.app.create_app`."""
