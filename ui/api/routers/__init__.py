"""One APIRouter per resource; `ui.api.app.create_app` includes them."""
