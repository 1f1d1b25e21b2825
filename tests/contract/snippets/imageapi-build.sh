curl -X POST https://imageapi.org/api/v1/prompt/build \
-H "Authorization: Bearer YOUR_API_KEY" \
-H "Content-Type: application/json" \
-d '{"subject":"fox in a scarf","setting":"snowy forest","mood":"cozy","art_style":"watercolor"}'
