curl -X POST https://imageapi.org/api/v1/generate \
-H "Authorization: Bearer YOUR_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"prompt": "a sunset over mountains",
"negative_prompt": "blurry, low quality",
"width": 512,
"height": 512
}'
