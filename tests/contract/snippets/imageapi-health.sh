curl -X GET https://imageapi.org/api/v1/health
