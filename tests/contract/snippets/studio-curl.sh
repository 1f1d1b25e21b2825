curl -X POST https://app.apimage.org/api/v1/image-studio \
-H "Authorization: Bearer sk_your_api_key" \
-H "Content-Type: application/json" \
-d '{
"prompt": "A minimalist Japanese garden at dawn",
"model": "flux-2-pro",
"aspect_ratio": "16:9"
}'
