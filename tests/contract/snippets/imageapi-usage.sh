curl -X GET https://imageapi.org/api/v1/usage \
-H "Authorization: Bearer YOUR_API_KEY"
