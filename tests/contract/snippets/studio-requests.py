import requests
url = 'https://app.apimage.org/api/v1/image-studio'
headers = {
'Authorization': 'Bearer sk_your_api_key',
'Content-Type': 'application/json'
}
payload = {
'prompt': 'A watercolor painting of Paris in autumn',
'model': 'flux-2-pro',
'aspect_ratio': '4:3'
}
response = requests.post(url, json=payload, headers=headers)
print(response.json()['image_url'])
