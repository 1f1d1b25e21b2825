"""GET /downloads/image-studio-wordpress.zip: the WordPress plugin, built from this server's own copy."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from engine.tools.wordpress_plugin import ZIP_NAME, build_zip

router = APIRouter(prefix="/downloads", tags=["downloads"])


@router.get(f"/{ZIP_NAME}", summary="The WordPress plugin (zip)", response_class=Response)
async def wordpress_plugin():
    """Install it in WordPress (Plugins → Add New → Upload Plugin), then set this server's URL and a key under
    Settings → Image Studio. Public: it is the plugin's source, nothing of this server's."""
    data = await asyncio.to_thread(build_zip)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{ZIP_NAME}"'})
