curl -X POST https://imageapi.org/api/v1/prompt/enhance \
-H "Authorization: Bearer YOUR_API_KEY" \
-H "Content-Type: application/json" \
-d '{"prompt":"robot reading a book","tone":"anime, cozy"}'
