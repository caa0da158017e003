"""The medsearch HTTP API (FastAPI) with the web app mounted at /ui: `create_app(settings)`.

Layout: `app` (factory, lifespan, web mount), `routers/` (one per resource), `models` (request/response
schemas), `deps` (engine handle, API-key checks), `errors` (error -> status), `settings` (ApiSettings).
"""

from ui.api.app import create_app
from ui.api.settings import ApiSettings, api_settings_from

__all__ = ["ApiSettings", "api_settings_from", "create_app"]
