curl -X POST https://imageapi.org/api/v1/generate \
-H "Authorization: Bearer YOUR_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"items": [
{ "prompt": "a futuristic city at night", "width": 512, "height": 512 },
{ "prompt": "a portrait photo, studio lighting", "width": 512, "height": 512 }
]
}'
